// mxedgectl's commands that talk to the daemons through the management API (mxedge.mgmt.v1 over
// management.socket; the control plane forwards what the data plane owns). Each command builds one
// Request, prints the Response (text, or the proto3 JSON mapping of the response body with --json)
// and maps the answer to an exit code (ctl.h).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "controlplane/analyzer/analyzer.h"
#include "controlplane/ctl/ctl.h"
#include "controlplane/wizard/wizard.h"
#include "mxedge/mgmt/v1/mgmt.pb.h"
#include "policy/config_loader.h"
#include "policy/mgmt_socket.h"

namespace mxedge::ctl {

namespace v1 = mxedge::mgmt::v1;

namespace {

constexpr const char* kDefaultSocket = "/run/mxedge/mgmt.sock";

// --socket, else the config's management.socket, else the default path.
std::string socket_path(const Ctl& ctl) {
  if (!ctl.socket.empty()) return ctl.socket;
  if (::access(ctl.config_file.c_str(), R_OK) == 0) {
    auto loaded = config::load_config_file(ctl.config_file, config::kFilesNone);  // only the socket paths
    if (loaded.ok()) return loaded.config->management().socket();
  }
  return kDefaultSocket;
}

int exit_for(v1::Error::Code code) {
  switch (code) {
    case v1::Error::OK: return kExitOk;
    case v1::Error::INVALID_ARGUMENT: return kExitUsage;
    case v1::Error::UNAVAILABLE: return kExitUnavailable;
    case v1::Error::PERMISSION_DENIED: return kExitPermission;
    case v1::Error::NOT_FOUND: return kExitNotFound;
    default: return kExitFailed;
  }
}

std::string code_name(v1::Error::Code code) {
  std::string n = v1::Error::Code_Name(code);
  return n.empty() ? "FAILED" : n;
}

// Sends the request; on failure prints the error and sets ctl.exit_code. True when the response
// carries a body to print.
bool call(Ctl& ctl, const v1::Request& request, v1::Response* response) {
  std::string error;
  const std::string path = socket_path(ctl);
  switch (mgmt::call(path, request, response, 120000, &error)) {
    case mgmt::CallStatus::kOk: break;
    case mgmt::CallStatus::kUnavailable:
      print_error(ctl, "UNAVAILABLE", "the control plane is not reachable: " + error);
      ctl.exit_code = kExitUnavailable;
      return false;
    case mgmt::CallStatus::kDenied:
      print_error(ctl, "PERMISSION_DENIED", error);
      ctl.exit_code = kExitPermission;
      return false;
    case mgmt::CallStatus::kFailed:
      print_error(ctl, "FAILED", "the control plane did not answer: " + error);
      ctl.exit_code = kExitFailed;
      return false;
  }
  if (response->error().code() != v1::Error::OK) {
    // With a body (reload: what each plane did) the caller prints the body; the error goes to stderr
    // only, so that --json still prints exactly one document.
    if (response->body_case() != v1::Response::BODY_NOT_SET) std::cerr << "mxedgectl: " << response->error().message() << "\n";
    else print_error(ctl, code_name(response->error().code()), response->error().message());
    ctl.exit_code = exit_for(response->error().code());
    return false;
  }
  ctl.exit_code = kExitOk;
  return true;
}

std::string iso_time(int64_t unix_s) {
  if (unix_s <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string duration_text(int64_t s) {
  if (s < 0) s = 0;
  std::ostringstream o;
  if (s >= 86400) o << s / 86400 << "d";
  if (s >= 3600) o << (s % 86400) / 3600 << "h";
  if (s >= 60) o << (s % 3600) / 60 << "m";
  o << s % 60 << "s";
  return o.str();
}

std::string bytes_text(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::ostringstream o;
  o << std::fixed << std::setprecision(u == 0 ? 0 : 1) << v << " " << units[u];
  return o.str();
}

// ---- status ----------------------------------------------------------------------------------------

void print_status(const v1::StatusResponse& s) {
  const auto& c = s.controlplane();
  std::cout << (s.healthy() ? "healthy" : "UNHEALTHY") << "\n\n";
  if (!s.has_controlplane()) {
    std::cout << "control plane   (not asked: --socket names the data plane's socket)\n";
  } else {
    std::cout << "control plane   mxedge-controlplane " << c.version() << ", pid " << c.pid() << ", up " << duration_text(c.uptime_s())
              << " (since " << iso_time(c.started_at()) << ")\n";
    std::cout << "  config        " << c.config_file() << " (" << c.connectors() << " connector" << (c.connectors() == 1 ? "" : "s") << ")\n";
    std::cout << "  policy table  version " << c.policy_version() << ", " << c.policies() << " polic" << (c.policies() == 1 ? "y" : "ies")
              << ", " << c.compiling() << " compiling, " << c.dataplane_sessions() << " data plane session"
              << (c.dataplane_sessions() == 1 ? "" : "s") << "\n";
    std::cout << "  MTA-STS cache " << c.sts_cache_entries() << " entr" << (c.sts_cache_entries() == 1 ? "y" : "ies") << "\n";
  }
  if (!s.has_dataplane()) {
    std::cout << "data plane      not reachable: " << s.dataplane_error() << "\n";
  } else {
    const auto& d = s.dataplane();
    std::cout << "data plane      mxedge-dataplane " << d.version() << ", pid " << d.pid() << ", up " << duration_text(d.uptime_s())
              << " (since " << iso_time(d.started_at()) << "), hostname " << d.hostname() << "\n";
    std::cout << "  workers       ";
    for (int i = 0; i < d.workers_size(); ++i) {
      const auto& w = d.workers(i);
      std::cout << (i ? ", " : "") << "w" << w.index() << "@cpu" << w.cpu() << " (" << w.sessions_active() << " sessions, "
                << w.spool_pending() << " queued)";
    }
    std::cout << "\n  listeners     ";
    for (int i = 0; i < d.listeners_size(); ++i) {
      const auto& l = d.listeners(i);
      std::cout << (i ? ", " : "") << l.name() << " " << l.address() << " " << l.tls_mode() << " " << l.role();
    }
    std::cout << "\n  XDP           ";
    if (d.xdp_interfaces().empty()) std::cout << "off";
    for (int i = 0; i < d.xdp_interfaces_size(); ++i) {
      const auto& x = d.xdp_interfaces(i);
      std::cout << (i ? ", " : "") << x.ifname() << " (ifindex " << x.ifindex() << ", " << x.mode() << ")";
    }
    if (!d.xdp_interfaces().empty()) std::cout << ", steering " << (d.xdp_steering() ? "on" : "off");
    std::cout << "\n  outbound      ";
    if (!d.outbound_enabled()) std::cout << "off";
    else
      std::cout << "policy version " << d.policy_version() << " (" << d.policies() << " policies), link "
                << (d.policy_link_up() ? "up" : "DOWN");
    std::cout << "\n  spool         " << d.spool_directory() << ": " << d.spool_messages() << " message" << (d.spool_messages() == 1 ? "" : "s")
              << ", " << bytes_text(d.spool_bytes()) << " on disk, " << bytes_text(d.spool_free_bytes()) << " free\n";
  }
  for (const auto& p : s.problems()) std::cout << "problem: " << p << "\n";
}

// ---- stats -----------------------------------------------------------------------------------------

void print_stats(const v1::StatsResponse& s, const v1::StatsResponse* prev, bool per_worker) {
  const double dt = prev != nullptr ? static_cast<double>(s.at_ms() - prev->at_ms()) / 1000.0 : 0;
  auto rate = [&](const std::string& k, uint64_t v) -> std::string {
    if (prev == nullptr || dt <= 0) return "";
    auto it = prev->totals().find(k);
    const uint64_t before = it == prev->totals().end() ? 0 : it->second;
    std::ostringstream o;
    o << std::fixed << std::setprecision(1) << static_cast<double>(v - std::min(v, before)) / dt << "/s";
    return o.str();
  };
  std::map<std::string, uint64_t> totals(s.totals().begin(), s.totals().end());
  std::cout << "counters (all workers)" << (prev != nullptr ? "                        total        rate" : "") << "\n";
  for (const auto& [k, v] : totals) {
    std::cout << "  " << std::left << std::setw(34) << k << std::right << std::setw(14) << v;
    if (prev != nullptr && k != "sessions_active" && k != "spool_pending") std::cout << std::setw(12) << rate(k, v);
    std::cout << "\n";
  }
  std::cout << "sessions: " << totals["sessions_active"] << " active; messages: accepted " << totals["messages_accepted"] << ", relayed "
            << totals["messages_relayed"] << ", delivered " << totals["outbound_delivered"] << ", deferred "
            << totals["messages_deferred"] + totals["outbound_deferred"] << ", bounced "
            << totals["recipients_failed"] + totals["outbound_failed"] << " (recipients)\n";
  std::cout << "TLS versions:";
  for (const auto& [k, v] : std::map<std::string, uint64_t>(s.tls_versions().begin(), s.tls_versions().end())) std::cout << " " << k << "=" << v;
  std::cout << "\nTLS ciphers:";
  if (s.tls_ciphers().empty()) std::cout << " none yet";
  for (const auto& [k, v] : std::map<std::string, uint64_t>(s.tls_ciphers().begin(), s.tls_ciphers().end())) std::cout << " " << k << "=" << v;
  std::cout << "\n";
  if (s.xdp_packets().empty()) {
    std::cout << "XDP: off\n";
  } else {
    std::cout << "XDP packets (all CPUs):\n";
    for (const auto& [k, v] : std::map<std::string, uint64_t>(s.xdp_packets().begin(), s.xdp_packets().end()))
      if (v != 0) std::cout << "  " << std::left << std::setw(34) << k << std::right << std::setw(14) << v << "\n";
    for (const auto& c : s.xdp_cpus()) {
      std::cout << "  cpu " << c.cpu() << ":";
      for (const auto& [k, v] : std::map<std::string, uint64_t>(c.packets().begin(), c.packets().end())) std::cout << " " << k << "=" << v;
      std::cout << "\n";
    }
  }
  if (per_worker) {
    for (const auto& w : s.workers()) {
      std::cout << "worker " << w.index() << " (cpu " << w.cpu() << "):";
      for (const auto& [k, v] : std::map<std::string, uint64_t>(w.counters().begin(), w.counters().end()))
        if (v != 0) std::cout << " " << k << "=" << v;
      std::cout << "\n";
    }
  }
}

// ---- policy ----------------------------------------------------------------------------------------

void print_policy(const v1::PolicyResponse& p, bool list) {
  if (list) {
    std::cout << "policy table version " << p.version() << ", " << p.entries_size() << " polic" << (p.entries_size() == 1 ? "y" : "ies") << "\n";
    for (const auto& e : p.entries()) std::cout << "  " << std::left << std::setw(32) << e.domain() << " " << e.summary() << "\n";
    return;
  }
  for (const auto& e : p.entries()) {
    std::cout << e.domain() << ": " << e.summary() << "\n" << e.explain();
    if (!e.explain().empty() && e.explain().back() != '\n') std::cout << "\n";
  }
}

// ---- queue -----------------------------------------------------------------------------------------

void print_queue(const v1::QueueResponse& q, bool detail) {
  if (!detail) {
    if (q.messages().empty()) {
      std::cout << "the queue is empty\n";
      return;
    }
    std::cout << std::left << std::setw(22) << "QUEUE ID" << std::setw(10) << "DIRECTION" << std::setw(9) << "SIZE" << std::setw(22)
              << "RECEIVED" << std::setw(9) << "ATTEMPTS" << "SENDER -> RECIPIENTS (pending)\n";
    for (const auto& m : q.messages()) {
      int pending = 0;
      for (const auto& r : m.recipients()) pending += r.state() == "pending";
      std::cout << std::left << std::setw(22) << m.queue_id() + (m.held() ? " (held)" : "") << std::setw(10) << m.direction() << std::setw(9) << m.size() << std::setw(22)
                << iso_time(m.received_at_us() / 1000000) << std::setw(9) << m.attempts() << "<" << m.sender() << "> -> ";
      bool first = true;
      for (const auto& r : m.recipients())
        if (r.state() == "pending") {
          std::cout << (first ? "" : ", ") << r.address();
          first = false;
        }
      std::cout << " (" << pending << ")\n";
      if (!m.last_error().empty()) std::cout << "    last error: " << m.last_error() << "\n";
    }
    std::cout << q.messages_size() << " message" << (q.messages_size() == 1 ? "" : "s");
    if (q.total() > static_cast<uint64_t>(q.messages_size())) std::cout << " shown of " << q.total() << " (--limit)";
    std::cout << "\n";
    return;
  }
  for (const auto& m : q.messages()) {
    std::cout << "queue id     " << m.queue_id() << " (worker " << m.worker() << ", " << m.direction() << ")\n"
              << "sender       <" << m.sender() << ">\n"
              << "client       " << m.client_address() << "\n"
              << "size         " << m.size() << " bytes\n"
              << "received     " << iso_time(m.received_at_us() / 1000000) << "\n"
              << "held         " << (m.held() ? "yes (mxedgectl queue release " + m.queue_id() + ")" : std::string("no")) << "\n"
              << "attempts     " << m.attempts() << "\n"
              << "next attempt " << (m.next_attempt_ms() > 0 ? iso_time(m.next_attempt_ms() / 1000) : std::string("now / in flight")) << "\n";
    if (m.requiretls()) std::cout << "tls          REQUIRETLS (RFC 8689: verified TLS to a REQUIRETLS server only)\n";
    else if (m.tls_required_no()) std::cout << "tls          TLS-Required: No (DANE / MTA-STS failures ignored)\n";
    if (!m.last_error().empty()) std::cout << "last error   " << m.last_error() << "\n";
    for (const auto& r : m.recipients()) std::cout << "recipient    " << r.address() << "  " << r.state() << "\n";
  }
}

// ---- trace -----------------------------------------------------------------------------------------

void print_trace(const v1::TraceResponse& t) {
  for (const auto& e : t.events()) {
    const int64_t s = e.ts_us() / 1000000;
    std::cout << iso_time(s) << " " << e.queue_id() << " " << std::left << std::setw(15) << e.event() << std::right << " " << e.domain();
    if (!e.host().empty()) std::cout << " via " << e.host() << (e.address().empty() ? "" : "[" + e.address() + "]");
    if (!e.requirement().empty()) std::cout << " requirement=" << e.requirement();
    if (!e.tls_version().empty()) std::cout << " tls=" << e.tls_version() << "/" << e.cipher();
    if (!e.verification().empty() && e.verification() != "none") {
      std::cout << " verified=" << e.verification();
      if (e.verification() == "dane" && e.dane_usage() >= 0) std::cout << "(usage " << e.dane_usage() << ", depth " << e.dane_depth() << ")";
    }
    if (!e.dane_mode().empty()) std::cout << " modes=dane:" << e.dane_mode() << ",mta-sts:" << e.sts_mode();
    if (!e.dnssec().empty()) std::cout << " dnssec=" << e.dnssec();
    if (!e.result_type().empty()) std::cout << " result=" << e.result_type();
    if (!e.detail().empty()) std::cout << "\n    " << e.detail();
    std::cout << "\n";
  }
}

void print_connectors(const v1::ConnectorResponse& c) {
  for (const auto& k : c.connectors()) {
    std::string domains;
    for (const auto& d : k.domains()) domains += (domains.empty() ? "" : ",") + d;
    auto mode = [](config::v1::ConnectorMode m) {
      std::string n = config::v1::ConnectorMode_Name(m);
      if (n.rfind("CONNECTOR_MODE_", 0) == 0) n = n.substr(15);
      for (char& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return n;
    };
    std::cout << std::left << std::setw(16) << k.name() << std::right << " domains=" << (domains.empty() ? "*" : domains)
              << " dane=" << mode(k.dane_mode()) << " mta-sts=" << mode(k.mta_sts_mode()) << " min_tls=" << k.min_tls_version()
              << " cleartext=" << (k.allow_cleartext() ? "allowed" : "refused");
    if (!k.smart_host().empty()) std::cout << " smart_host=" << k.smart_host();
    std::cout << "\n";
  }
  if (c.recompiled() > 0) std::cout << c.recompiled() << " polic" << (c.recompiled() == 1 ? "y" : "ies") << " recompiled\n";
}

// ---- tlsrpt ----------------------------------------------------------------------------------------

std::string joined(const google::protobuf::RepeatedPtrField<std::string>& v, const char* sep = ",") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

void print_tlsrpt_list(const v1::TlsRptResponse& t) {
  if (t.reports().empty()) {
    std::cout << "no TLS-RPT reports received\n";
    return;
  }
  std::cout << std::left << std::setw(22) << "RECEIVED" << std::setw(21) << "ORGANIZATION" << std::setw(24) << "POLICY DOMAINS"
            << std::setw(42) << "DATE RANGE" << std::right << std::setw(10) << "OK" << std::setw(10) << "FAILED" << "  ID\n";
  for (const auto& r : t.reports()) {
    const bool rejected = !r.error().empty();
    std::cout << std::left << std::setw(22) << iso_time(r.received_at()) << std::setw(20)
              << (rejected ? std::string("(rejected)") : r.organization_name()) << " " << std::setw(23)
              << (rejected ? (r.report_domain().empty() ? "-" : r.report_domain()) : joined(r.policy_domains())) << " " << std::setw(42)
              << (rejected ? std::string("-") : r.start_datetime() + ".." + r.end_datetime()) << std::right << std::setw(10)
              << (rejected ? std::string("-") : std::to_string(r.successful_sessions())) << std::setw(10)
              << (rejected ? std::string("-") : std::to_string(r.failed_sessions())) << "  " << r.id() << "\n";
    if (rejected) std::cout << "    error: " << r.error() << (r.from().empty() ? "" : " (from " + r.from() + ")") << "\n";
  }
  if (t.total() > static_cast<uint32_t>(t.reports_size()))
    std::cout << t.reports_size() << " of " << t.total() << " reports shown (--limit)\n";
}

void print_tlsrpt_report(const v1::TlsRptInboundReport& r) {
  auto line = [](const char* key, const std::string& value) {
    if (!value.empty()) std::cout << std::left << std::setw(16) << key << std::right << value << "\n";
  };
  line("id", r.id() + " (received " + iso_time(r.received_at()) + " by worker " + std::to_string(r.worker()) + ", " +
                 std::to_string(r.size()) + " bytes)");
  line("from", r.from());
  line("subject", r.subject());
  line("report domain", r.report_domain());
  line("submitter", r.submitter());
  if (!r.error().empty()) {
    line("REJECTED", r.error());
    return;
  }
  line("organization", r.organization_name());
  line("report id", r.report_id());
  line("contact", r.contact_info());
  line("date range", r.start_datetime() + " to " + r.end_datetime());
  line("sessions", std::to_string(r.successful_sessions()) + " successful, " + std::to_string(r.failed_sessions()) + " failed");
  for (int i = 0; i < r.policies_size(); ++i) {
    const auto& p = r.policies(i);
    std::cout << "\npolicy " << i + 1 << ": " << p.policy_type() << " " << p.policy_domain() << "\n";
    for (int k = 0; k < p.policy_strings_size(); ++k)
      std::cout << "  " << std::left << std::setw(16) << (k == 0 ? "policy-string" : "") << std::right << p.policy_strings(k) << "\n";
    if (!p.mx_hosts().empty()) std::cout << "  " << std::left << std::setw(16) << "mx-host" << std::right << joined(p.mx_hosts(), ", ") << "\n";
    std::cout << "  " << std::left << std::setw(16) << "sessions" << std::right << p.successful_sessions() << " successful, "
              << p.failed_sessions() << " failed\n";
    for (const auto& f : p.failures()) {
      std::cout << "  failure         " << f.result_type() << ": " << f.failed_session_count() << " session"
                << (f.failed_session_count() == 1 ? "" : "s");
      if (!f.sending_mta_ip().empty()) std::cout << ", sending MTA " << f.sending_mta_ip();
      if (!f.receiving_mx_hostname().empty() || !f.receiving_ip().empty()) {
        std::cout << ", receiving MX " << (f.receiving_mx_hostname().empty() ? "-" : f.receiving_mx_hostname());
        if (!f.receiving_ip().empty()) std::cout << " [" << f.receiving_ip() << "]";
      }
      if (!f.receiving_mx_helo().empty()) std::cout << ", HELO " << f.receiving_mx_helo();
      std::cout << "\n";
      if (!f.failure_reason_code().empty()) std::cout << "                  reason code " << f.failure_reason_code() << "\n";
      if (!f.additional_information().empty()) std::cout << "                  see " << f.additional_information() << "\n";
    }
  }
}

volatile sig_atomic_t g_interrupted = 0;

}  // namespace

void add_daemon_commands(CLI::App& app, Ctl& ctl) {
  // status
  app.add_subcommand("status", "Health of both planes: versions, uptime, workers, XDP, policy version, spool")->callback([&ctl] {
    v1::Request q;
    q.mutable_status();
    v1::Response r;
    if (!call(ctl, q, &r)) return;
    if (ctl.json) print_json(r.status());
    else print_status(r.status());
    ctl.exit_code = r.status().healthy() ? kExitOk : kExitNegative;
  });

  // stats
  {
    auto* cmd = app.add_subcommand("stats", "Counters: sessions, TLS versions and ciphers, messages, XDP per CPU");
    auto watch = std::make_shared<double>(0);
    auto count = std::make_shared<int>(0);
    auto per_worker = std::make_shared<bool>(false);
    cmd->add_option("--watch", *watch, "Repeat every SECONDS and show rates (Ctrl-C stops)")->expected(0, 1)->default_str("1");
    cmd->add_option("--count", *count, "With --watch: stop after N samples")->check(CLI::PositiveNumber);
    cmd->add_flag("--per-worker", *per_worker, "Also show each worker's counters");
    cmd->callback([&ctl, cmd, watch, count, per_worker] {
      const bool watching = cmd->count("--watch") > 0;
      double interval = *watch <= 0 ? 1.0 : *watch;
      ::signal(SIGINT, [](int) { g_interrupted = 1; });
      v1::StatsResponse prev;
      bool have_prev = false;
      for (int n = 0; !g_interrupted; ++n) {
        v1::Request q;
        q.mutable_stats();
        v1::Response r;
        if (!call(ctl, q, &r)) return;
        if (ctl.json) print_json(r.stats());
        else {
          if (watching) std::cout << "--- " << iso_time(r.stats().at_ms() / 1000) << "\n";
          print_stats(r.stats(), have_prev ? &prev : nullptr, *per_worker);
        }
        std::cout.flush();
        prev = r.stats();
        have_prev = true;
        if (!watching || (*count > 0 && n + 1 >= *count)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(interval * 1000)));
      }
      ctl.exit_code = kExitOk;
    });
  }

  // policy
  {
    auto* policy = app.add_subcommand("policy", "Per-destination delivery policies (DANE / MTA-STS) compiled by the control plane");
    policy->require_subcommand(1);
    auto add = [&ctl, policy](const char* name, const char* help, v1::PolicyRequest::Op op) {
      auto* cmd = policy->add_subcommand(name, help);
      auto domain = std::make_shared<std::string>();
      cmd->add_option("domain", *domain, "Destination domain")->required();
      cmd->callback([&ctl, op, domain] {
        v1::Request q;
        q.mutable_policy()->set_op(op);
        q.mutable_policy()->set_domain(*domain);
        v1::Response r;
        if (!call(ctl, q, &r)) return;
        if (ctl.json) print_json(r.policy());
        else if (op == v1::PolicyRequest::PURGE) std::cout << *domain << ": purged (compiled again when mail for it arrives)\n";
        else print_policy(r.policy(), false);
      });
    };
    add("show", "The effective policy of DOMAIN and the reasons for it (compiled now when absent)", v1::PolicyRequest::SHOW);
    add("refresh", "Compile DOMAIN's policy again now (fresh DNS and MTA-STS) and push it", v1::PolicyRequest::REFRESH);
    add("purge", "Drop DOMAIN's policy from the table and the data planes", v1::PolicyRequest::PURGE);
    policy->add_subcommand("list", "Every policy in the table")->callback([&ctl] {
      v1::Request q;
      q.mutable_policy()->set_op(v1::PolicyRequest::LIST);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.policy());
      else print_policy(r.policy(), true);
    });
  }

  // queue
  {
    auto* queue = app.add_subcommand("queue", "Messages in the spool: list, show, retry, hold, release, delete");
    queue->require_subcommand(1);
    auto add = [&ctl, queue](const char* name, const char* help, v1::QueueRequest::Op op, bool ids_required, bool selectors) {
      auto* cmd = queue->add_subcommand(name, help);
      auto ids = std::make_shared<std::vector<std::string>>();
      auto domain = std::make_shared<std::string>();
      auto all = std::make_shared<bool>(false);
      auto limit = std::make_shared<uint32_t>(1000);
      auto* opt = cmd->add_option("queue_ids", *ids, "Queue ids");
      if (op == v1::QueueRequest::LIST) cmd->add_option("--limit", *limit, "At most N messages (oldest first)")->capture_default_str();
      if (ids_required) opt->required();
      if (selectors) {
        cmd->add_option("--domain", *domain, "Only messages with a recipient at this domain");
        if (op != v1::QueueRequest::LIST) cmd->add_flag("--all", *all, "Every message");
      }
      cmd->callback([&ctl, op, ids, domain, all, limit] {
        v1::Request q;
        auto* qr = q.mutable_queue();
        qr->set_op(op);
        qr->set_limit(*limit);
        for (const auto& id : *ids) qr->add_queue_ids(id);
        qr->set_domain(*domain);
        qr->set_all(*all);
        v1::Response r;
        if (!call(ctl, q, &r)) return;
        if (ctl.json) print_json(r.queue());
        else if (op == v1::QueueRequest::LIST) print_queue(r.queue(), false);
        else if (op == v1::QueueRequest::SHOW) print_queue(r.queue(), true);
        else {
          std::cout << r.queue().affected() << " message" << (r.queue().affected() == 1 ? "" : "s") << " affected\n";
          for (const auto& s : r.queue().skipped()) std::cout << "skipped " << s << "\n";
        }
      });
    };
    add("list", "Every message with unsettled recipients", v1::QueueRequest::LIST, false, true);
    add("show", "One message: envelope, recipients and their state, attempts, last error", v1::QueueRequest::SHOW, true, false);
    add("retry", "Attempt deferred messages now (clears their back-off)", v1::QueueRequest::RETRY, false, true);
    add("delete", "Remove messages without a notification (not while an attempt is in flight)", v1::QueueRequest::DELETE, false, true);
    add("hold", "Keep messages in the spool, also across restarts, without attempting them", v1::QueueRequest::HOLD, false, true);
    add("release", "Resume held messages (attempted at once)", v1::QueueRequest::RELEASE, false, true);
  }

  // trace
  {
    auto* cmd = app.add_subcommand("trace", "The message trace of a queue id, a recipient or a destination domain");
    auto query = std::make_shared<std::string>();
    auto since = std::make_shared<int64_t>(0);
    auto limit = std::make_shared<uint32_t>(1000);
    cmd->add_option("what", *query, "Queue id, recipient address or domain")->required();
    cmd->add_option("--since", *since, "Only events after this Unix time (seconds)");
    cmd->add_option("--limit", *limit, "At most N events")->capture_default_str();
    cmd->callback([&ctl, query, since, limit] {
      v1::Request q;
      q.mutable_trace()->set_query(*query);
      q.mutable_trace()->set_since_us(*since * 1000000);
      q.mutable_trace()->set_limit(*limit);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.trace());
      else print_trace(r.trace());
    });
  }

  // tlsrpt
  {
    auto* group = app.add_subcommand("tlsrpt", "TLS-RPT (RFC 8460): reports other MTAs sent to tlsrpt.inbound.mailboxes "
                                               "(list, show) and the outcomes this gateway reports on (outcomes)");
    group->require_subcommand(1);
    auto* list = group->add_subcommand(
        "list", "Received reports, newest first: organization, policy domains, date range, sessions ok/failed, id; "
                "rejected reports with their error. --json: {\"reports\": [TlsRptInboundReport], \"total\"} (mgmt.proto)");
    auto domain = std::make_shared<std::string>();
    auto limit = std::make_shared<uint32_t>(100);
    auto since = std::make_shared<int64_t>(0);
    list->add_option("--domain", *domain, "Only reports about this policy domain");
    list->add_option("--limit", *limit, "At most N reports")->capture_default_str();
    list->add_option("--since", *since, "Only reports received after this Unix time (seconds)");
    list->callback([&ctl, domain, limit, since] {
      v1::Request q;
      auto* t = q.mutable_tlsrpt();
      t->set_action(v1::TlsRptRequest::LIST);
      t->set_domain(*domain);
      t->set_limit(*limit);
      t->set_since(*since);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.tlsrpt());
      else print_tlsrpt_list(r.tlsrpt());
    });
    auto* show = group->add_subcommand(
        "show", "One report: the mail's headers, the report's fields, per policy its strings, mx hosts, session counts and "
                "failure details. --json: {\"reports\": [one TlsRptInboundReport with policies and report_json]}");
    auto id = std::make_shared<std::string>();
    show->add_option("id", *id, "The report's id (from tlsrpt list)")->required();
    show->callback([&ctl, id] {
      v1::Request q;
      q.mutable_tlsrpt()->set_action(v1::TlsRptRequest::SHOW);
      q.mutable_tlsrpt()->set_id(*id);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.tlsrpt());
      else if (!r.tlsrpt().reports().empty()) print_tlsrpt_report(r.tlsrpt().reports(0));
    });
  }

  // tlsrpt outcomes: what the daily reports this gateway sends are made of
  {
    auto* group = app.get_subcommand("tlsrpt");
    auto* pending = group->add_subcommand(
        "pending", "This gateway's own daily reports not yet taken by every rua target: day, domain, due or next "
                   "attempt, attempts, each target's state and the last error. --json: TlsRptResponse.outgoing");
    pending->callback([&ctl] {
      v1::Request q;
      q.mutable_tlsrpt()->set_action(v1::TlsRptRequest::PENDING);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) {
        print_json(r.tlsrpt());
        return;
      }
      if (r.tlsrpt().outgoing().empty()) {
        std::cout << "no TLS-RPT reports waiting to be sent\n";
        return;
      }
      for (const auto& o : r.tlsrpt().outgoing()) {
        std::cout << o.day() << "  " << o.policy_domain() << "  (" << o.successful_sessions() << " ok, " << o.failed_sessions()
                  << " failed)  " << (o.attempts() == 0 ? "due " + iso_time(o.due())
                                                          : std::to_string(o.attempts()) + " attempt" + (o.attempts() == 1 ? "" : "s") +
                                                                ", next " + iso_time(o.next_attempt()))
                  << "\n";
        if (o.targets().empty()) std::cout << "    targets not looked up yet (_smtp._tls." << o.policy_domain() << ")\n";
        for (const auto& t : o.targets())
          std::cout << "    " << (t.done() ? "sent     " : "waiting  ") << t.uri() << (t.result().empty() ? "" : "  " + t.result()) << "\n";
        if (!o.last_error().empty()) std::cout << "    last error: " << o.last_error() << "\n";
      }
    });
    auto* outcomes = group->add_subcommand(
        "outcomes", "The outbound TLS session outcomes recorded for one UTC day (default today), per policy domain and "
                    "type: what the next daily report to each domain's rua will say. --json: TlsOutcomesResponse (mgmt.proto)");
    auto date = std::make_shared<std::string>();
    auto domain = std::make_shared<std::string>();
    outcomes->add_option("--date", *date, "The UTC day, YYYY-MM-DD (default: today)");
    outcomes->add_option("--domain", *domain, "Only this policy domain");
    outcomes->callback([&ctl, date, domain] {
      int64_t day = static_cast<int64_t>(::time(nullptr));
      if (!date->empty()) {
        struct tm tm {};
        const char* end = ::strptime(date->c_str(), "%Y-%m-%d", &tm);
        if (end == nullptr || *end != 0) {
          print_error(ctl, "INVALID_ARGUMENT", "--date: expected YYYY-MM-DD, got '" + *date + "'");
          ctl.exit_code = kExitUsage;
          return;
        }
        day = static_cast<int64_t>(::timegm(&tm));
      }
      v1::Request q;
      q.mutable_tls_outcomes()->set_day_from(day);
      q.mutable_tls_outcomes()->set_domain(*domain);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) {
        print_json(r.tls_outcomes());
        return;
      }
      const auto& rows = r.tls_outcomes().outcomes();
      if (rows.empty()) {
        std::cout << "no outbound TLS sessions recorded on " << iso_time(day - (day % 86400)).substr(0, 10) << "\n";
        return;
      }
      std::cout << std::left << std::setw(28) << "POLICY DOMAIN" << std::setw(17) << "TYPE" << std::setw(28) << "RESULT"
                << std::right << std::setw(9) << "SESSIONS" << "  RECEIVING MX\n";
      for (const auto& o : rows) {
        std::cout << std::left << std::setw(27) << o.policy_domain() << " " << std::setw(16) << o.policy_type() << " " << std::setw(27)
                  << (o.result_type().empty() ? std::string("success") : o.result_type()) << std::right << std::setw(9) << o.sessions();
        if (!o.receiving_mx_hostname().empty() || !o.receiving_ip().empty())
          std::cout << "  " << (o.receiving_mx_hostname().empty() ? "-" : o.receiving_mx_hostname())
                    << (o.receiving_ip().empty() ? "" : " [" + o.receiving_ip() + "]");
        std::cout << "\n";
        if (!o.failure_reason_code().empty()) std::cout << "    reason: " << o.failure_reason_code() << "\n";
      }
    });
  }

  // blocklist / allowlist
  for (auto [name, list] : {std::pair<const char*, v1::PrefixRequest::List>{"blocklist", v1::PrefixRequest::BLOCK},
                            {"allowlist", v1::PrefixRequest::ALLOW}}) {
    auto* group = app.add_subcommand(name, list == v1::PrefixRequest::BLOCK ? "XDP blocklist: sources dropped before the kernel's TCP stack"
                                                                            : "XDP allowlist: sources exempt from the blocklist and the SYN rate limit");
    group->require_subcommand(1);
    for (auto [verb, op] : {std::pair<const char*, v1::PrefixRequest::Op>{"add", v1::PrefixRequest::ADD}, {"del", v1::PrefixRequest::DEL}}) {
      auto* cmd = group->add_subcommand(verb, op == v1::PrefixRequest::ADD ? "Add prefixes (192.0.2.0/24, 2001:db8::/32, 198.51.100.7)"
                                                                             : "Remove prefixes");
      auto prefixes = std::make_shared<std::vector<std::string>>();
      cmd->add_option("prefixes", *prefixes, "IPv4/IPv6 addresses or prefixes")->required();
      cmd->callback([&ctl, list = list, op = op, prefixes, verb = std::string(verb)] {
        v1::Request q;
        q.mutable_prefix()->set_list(list);
        q.mutable_prefix()->set_op(op);
        for (const auto& p : *prefixes) q.mutable_prefix()->add_prefixes(p);
        v1::Response r;
        if (!call(ctl, q, &r)) return;
        if (ctl.json) print_json(r.prefix());
        else
          for (const auto& p : r.prefix().prefixes()) std::cout << (verb == "add" ? "added " : "removed ") << p << "\n";
      });
    }
    group->add_subcommand("list", "The prefixes listed")->callback([&ctl, list = list] {
      v1::Request q;
      q.mutable_prefix()->set_list(list);
      q.mutable_prefix()->set_op(v1::PrefixRequest::LIST);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.prefix());
      else {
        for (const auto& p : r.prefix().prefixes()) std::cout << p << "\n";
        if (r.prefix().prefixes().empty()) std::cout << "(empty)\n";
      }
    });
  }

  // ratelimit
  {
    auto* group = app.add_subcommand("ratelimit", "The XDP per-source SYN rate limit");
    group->require_subcommand(1);
    auto print = [&ctl](const v1::RateLimitResponse& r) {
      if (ctl.json) print_json(r);
      else if (r.syn_per_second() == 0) std::cout << "SYN rate limit: off\n";
      else std::cout << "SYN rate limit: " << r.syn_per_second() << " SYN/s per source, burst " << r.burst() << "\n";
      if (!ctl.json && r.syn_per_second() != 0) {
        if (r.new_source_per_second() == 0) std::cout << "new-source budget: off\n";
        else
          std::cout << "new-source budget: " << r.new_source_per_second() << " new sources/s per CPU, burst "
                    << r.new_source_burst() << "\n";
      }
    };
    group->add_subcommand("show", "The current limit")->callback([&ctl, print] {
      v1::Request q;
      q.mutable_rate_limit();
      v1::Response r;
      if (call(ctl, q, &r)) print(r.rate_limit());
    });
    auto* set = group->add_subcommand("set", "Set the limit (0 turns it off)");
    auto rate = std::make_shared<uint32_t>(0);
    auto burst = std::make_shared<uint32_t>(0);
    set->add_option("--rate", *rate, "SYNs per second per source (0: off)")->required();
    set->add_option("--burst", *burst, "Burst size (at least 1 when a rate is set)");
    set->callback([&ctl, print, rate, burst] {
      v1::Request q;
      q.mutable_rate_limit()->set_set(true);
      q.mutable_rate_limit()->set_syn_per_second(*rate);
      q.mutable_rate_limit()->set_burst(*burst == 0 && *rate > 0 ? *rate : *burst);
      v1::Response r;
      if (call(ctl, q, &r)) print(r.rate_limit());
    });
  }

  // connector
  {
    auto* group = app.add_subcommand("connector", "Outbound connectors and their DANE / MTA-STS modes");
    group->require_subcommand(1);
    group->add_subcommand("list", "Every connector (the built-in default when none is configured)")->callback([&ctl] {
      v1::Request q;
      q.mutable_connector()->set_op(v1::ConnectorRequest::LIST);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.connector());
      else print_connectors(r.connector());
    });
    auto* show = group->add_subcommand("show", "One connector");
    auto show_name = std::make_shared<std::string>();
    show->add_option("name", *show_name, "Connector name")->required();
    show->callback([&ctl, show_name] {
      v1::Request q;
      q.mutable_connector()->set_op(v1::ConnectorRequest::SHOW);
      q.mutable_connector()->set_name(*show_name);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.connector());
      else print_connectors(r.connector());
    });
    auto* set = group->add_subcommand("set", "Change a connector's modes: written to the config file and applied at once");
    auto name = std::make_shared<std::string>();
    auto dane = std::make_shared<std::string>();
    auto sts = std::make_shared<std::string>();
    const std::vector<std::string> modes = {"none", "opportunistic", "mandatory"};
    set->add_option("name", *name, "Connector name")->required();
    set->add_option("--dane-mode", *dane, "none | opportunistic | mandatory")->check(CLI::IsMember(modes));
    set->add_option("--mta-sts-mode", *sts, "none | opportunistic | mandatory")->check(CLI::IsMember(modes));
    set->callback([&ctl, name, dane, sts] {
      v1::Request q;
      auto* c = q.mutable_connector();
      c->set_op(v1::ConnectorRequest::SET);
      c->set_name(*name);
      c->set_dane_mode(*dane);
      c->set_mta_sts_mode(*sts);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.connector());
      else {
        print_connectors(r.connector());
        std::cout << "written to " << r.connector().config_file() << " (previous version: " << r.connector().config_file() << ".bak)\n";
      }
    });
  }

  // config reload (config validate is an offline tool)
  {
    CLI::App* config = nullptr;
    try {
      config = app.get_subcommand("config");
    } catch (const CLI::OptionNotFound&) {
      config = app.add_subcommand("config", "The gateway's configuration");
      config->require_subcommand(1);
    }
    config->add_subcommand("reload", "Both planes re-read their configuration (certificates, domains, connectors, limits)")->callback([&ctl] {
      v1::Request q;
      q.mutable_reload();
      v1::Response r;
      const bool ok = call(ctl, q, &r);
      if (!r.has_reload()) return;
      if (ctl.json) print_json(r.reload());
      else {
        std::cout << "control plane: " << (r.reload().controlplane_reloaded() ? "" : "NOT reloaded: ") << r.reload().controlplane_detail() << "\n";
        std::cout << "data plane:    " << (r.reload().dataplane_reloaded() ? "" : "NOT reloaded: ") << r.reload().dataplane_detail() << "\n";
      }
      if (ok) ctl.exit_code = kExitOk;
    });
  }

  // check
  {
    auto* cmd = app.add_subcommand("check", "Connectivity analyzer: DNS(SEC), TLSA, MTA-STS and a live probe of each MX of DOMAIN");
    auto domain = std::make_shared<std::string>();
    auto no_probe = std::make_shared<bool>(false);
    cmd->add_option("domain", *domain, "Destination domain")->required();
    cmd->add_flag("--no-probe", *no_probe, "DNS and MTA-STS only; do not connect to the MX hosts");
    cmd->callback([&ctl, domain, no_probe] {
      v1::Request q;
      q.mutable_check()->set_domain(*domain);
      q.mutable_check()->set_no_probe(*no_probe);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.check());
      else std::cout << analyzer::render_check_text(r.check());
      // 0: the configured connector would deliver; 1: it would not; 6: the check could not run.
      ctl.exit_code = !r.check().error().empty() ? kExitFailed : analyzer::would_deliver(r.check()) ? kExitOk : kExitNegative;
    });
  }

  // dns wizard
  {
    auto* dns = app.add_subcommand("dns", "DNS for the gateway's own domains");
    dns->require_subcommand(1);
    auto* cmd = dns->add_subcommand("wizard", "DNSSEC enablement wizard: what to publish for inbound DANE / MTA-STS, step by step");
    auto domain = std::make_shared<std::string>();
    auto mx = std::make_shared<std::vector<std::string>>();
    auto next_cert = std::make_shared<std::string>();
    auto next_key = std::make_shared<std::string>();
    cmd->add_option("domain", *domain, "One of the gateway's accepted domains")->required();
    cmd->add_option("--mx", *mx, "The gateway's MX name(s) (default: the configured hostname)");
    cmd->add_option("--next-cert", *next_cert, "The next certificate (PEM), for the rollover TLSA record");
    cmd->add_option("--next-key", *next_key, "The next private key (PEM), for the rollover TLSA record");
    cmd->callback([&ctl, domain, mx, next_cert, next_key] {
      v1::Request q;
      auto* w = q.mutable_wizard();
      w->set_domain(*domain);
      for (const auto& m : *mx) w->add_mx_names(m);
      w->set_next_cert_file(*next_cert);
      w->set_next_key_file(*next_key);
      v1::Response r;
      if (!call(ctl, q, &r)) return;
      if (ctl.json) print_json(r.wizard());
      else std::cout << wizard::render_wizard_text(r.wizard());
      // 0: ready; 1: steps need action; 6: the wizard could not run.
      ctl.exit_code = !r.wizard().error().empty() ? kExitFailed : r.wizard().ready() ? kExitOk : kExitNegative;
    });
  }
}

}  // namespace mxedge::ctl
