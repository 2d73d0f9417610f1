#include "controlplane/mgmt/management.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "controlplane/analyzer/analyzer.h"
#include "controlplane/policy_compiler/policy_json.h"
#include "controlplane/wizard/wizard.h"
#include "policy/config_loader.h"
#include "policy/connectors.h"
#include "policy/log.h"
#include "policy/policy_codec.h"

namespace mxedge::controlplane {

namespace v1 = mxedge::mgmt::v1;
using mgmt::error_response;

// ---- EventBaseTasks ----------------------------------------------------------------------------

EventBaseTasks::EventBaseTasks(event_base* base) {
  fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ev_ = event_new(base, fd_, EV_READ | EV_PERSIST, &EventBaseTasks::on_wake, this);
  event_add(ev_, nullptr);
}

EventBaseTasks::~EventBaseTasks() {
  if (ev_ != nullptr) event_free(ev_);
  if (fd_ >= 0) ::close(fd_);
}

void EventBaseTasks::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(fn));
  }
  const uint64_t one = 1;
  if (::write(fd_, &one, sizeof one) < 0) {
    // EAGAIN: the counter is saturated, so the base is already woken.
  }
}

void EventBaseTasks::on_wake(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<EventBaseTasks*>(arg);
  uint64_t n = 0;
  if (::read(fd, &n, sizeof n) < 0) {
  }
  std::deque<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    tasks.swap(self->tasks_);
  }
  for (auto& t : tasks) t();
}

// ---- helpers -------------------------------------------------------------------------------------

namespace {

int64_t unix_now() { return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// Lower case, no trailing dot; empty when `text` is not a domain name.
std::string normalize_domain(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!text.empty() && text.back() == '.') text.pop_back();
  if (text.empty() || text.size() > 253 || text.front() == '.' || text.find("..") != std::string::npos) return {};
  for (char c : text)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_')) return {};
  return text;
}

v1::PolicyEntry entry_for(const policy::DestinationPolicy& p) {
  v1::PolicyEntry e;
  e.set_domain(p.domain);
  policy::to_proto(p, e.mutable_policy());
  std::string hosts;
  for (const auto& h : p.hosts) hosts += (hosts.empty() ? "" : ", ") + h.name + " (" + std::string(policy::to_string(h.tls)) + ")";
  e.set_summary(std::string(policy::to_string(p.verdict)) + " via connector " + p.connector + (hosts.empty() ? "" : "; hosts: " + hosts));
  e.set_explain(policy_compiler::to_text(p));
  return e;
}

bool parse_mode(const std::string& text, config::v1::ConnectorMode* mode) {
  if (text == "none") *mode = config::v1::CONNECTOR_MODE_NONE;
  else if (text == "opportunistic") *mode = config::v1::CONNECTOR_MODE_OPPORTUNISTIC;
  else if (text == "mandatory") *mode = config::v1::CONNECTOR_MODE_MANDATORY;
  else return false;
  return true;
}

bool is_change(const v1::Request& r) {
  switch (r.body_case()) {
    case v1::Request::kPolicy: return r.policy().op() == v1::PolicyRequest::REFRESH || r.policy().op() == v1::PolicyRequest::PURGE;
    case v1::Request::kConnector: return r.connector().op() == v1::ConnectorRequest::SET;
    case v1::Request::kReload: return true;
    default: return false;
  }
}

}  // namespace

// ---- Management ----------------------------------------------------------------------------------

Management::Management(ManagementDeps deps) : deps_(std::move(deps)), tasks_(deps_.base) {}

config::v1::Config Management::current_config() {
  config::v1::Config c;
  tasks_.run<config::v1::Config>([this] { return deps_.table->config(); }, &c);
  return c;
}

std::string Management::dataplane_socket() { return current_config().management().dataplane_socket(); }

v1::Response Management::handle(const v1::Request& request, const mgmt::Peer& peer) {
  v1::Response r;
  switch (request.body_case()) {
    case v1::Request::kStatus: r = status(); break;
    case v1::Request::kPolicy: r = policy(request.policy()); break;
    case v1::Request::kConnector: r = connector(request.connector()); break;
    case v1::Request::kReload: r = reload(); break;
    case v1::Request::kCheck: r = check(request.check()); break;
    case v1::Request::kWizard: r = wizard(request.wizard()); break;
    case v1::Request::kStats:
    case v1::Request::kQueue:
    case v1::Request::kTrace:
    case v1::Request::kPrefix:
    case v1::Request::kRateLimit:
    case v1::Request::kTlsrpt:
      if (request.tlsrpt().action() == v1::TlsRptRequest::PENDING) {
        if (!deps_.tlsrpt_pending)
          return error_response(v1::Error::UNAVAILABLE, "TLS-RPT reports are off (tlsrpt.reports.enabled in the control plane's config)");
        deps_.tlsrpt_pending(r.mutable_tlsrpt());
        break;
      }
      r = forward(request);
      break;
    case v1::Request::kTlsOutcomes:
      r = forward(request);
      break;
    case v1::Request::kSubmit:
      // Generated mail is submitted by the control plane itself (TLS-RPT), straight to the data plane.
      return error_response(v1::Error::INVALID_ARGUMENT, "submit is answered by the data plane only");
    case v1::Request::BODY_NOT_SET:
      return error_response(v1::Error::INVALID_ARGUMENT, "empty request");
  }
  if (is_change(request))
    log::info("mgmt.change").kv("plane", "controlplane").kv("peer", peer.to_string()).kv("request", request.ShortDebugString())
        .kv("result", r.error().code() == v1::Error::OK ? std::string("ok") : r.error().message());
  return r;
}

v1::Response Management::forward(const v1::Request& request) {
  const std::string path = dataplane_socket();
  v1::Response r;
  std::string error;
  switch (mgmt::call(path, request, &r, 60000, &error)) {
    case mgmt::CallStatus::kOk: return r;
    case mgmt::CallStatus::kUnavailable: return error_response(v1::Error::UNAVAILABLE, "the data plane is not reachable: " + error);
    case mgmt::CallStatus::kDenied:
      return error_response(v1::Error::UNAVAILABLE, "the data plane refused the control plane: " + error);
    case mgmt::CallStatus::kFailed:
      break;
  }
  return error_response(v1::Error::FAILED, "the data plane did not answer: " + error);
}

v1::Response Management::status() {
  v1::Response r;
  v1::ControlplaneStatus cp;
  const bool ran = tasks_.run<v1::ControlplaneStatus>([this] {
    v1::ControlplaneStatus s;
    s.set_version(deps_.version);
    s.set_pid(static_cast<uint32_t>(::getpid()));
    s.set_started_at(deps_.started_at);
    s.set_uptime_s(unix_now() - deps_.started_at);
    s.set_config_file(deps_.config_file);
    s.set_policy_version(deps_.table->version());
    s.set_policies(deps_.table->size());
    s.set_compiling(deps_.table->compiling());
    if (deps_.policy_server != nullptr) s.set_dataplane_sessions(deps_.policy_server->sessions());
    if (deps_.sts_cache != nullptr) s.set_sts_cache_entries(deps_.sts_cache->size());
    s.set_connectors(static_cast<uint32_t>(deps_.table->config().connectors_size()));
    return s;
  }, &cp);
  if (!ran) return error_response(v1::Error::UNAVAILABLE, "the control plane is stopping");
  auto* st = r.mutable_status();
  v1::Request q;
  q.mutable_status();
  v1::Response dp = forward(q);
  // A push in flight: the data plane applies the table's version within moments; look again before
  // calling that a problem.
  for (int i = 0; i < 10 && dp.error().code() == v1::Error::OK && dp.status().dataplane().outbound_enabled() &&
                  dp.status().dataplane().policy_link_up() && dp.status().dataplane().policy_version() != cp.policy_version();
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    on_base([&] { cp.set_policy_version(deps_.table->version()); });
    dp = forward(q);
  }
  *st->mutable_controlplane() = cp;
  if (dp.error().code() == v1::Error::OK && dp.status().has_dataplane()) {
    *st->mutable_dataplane() = dp.status().dataplane();
  } else {
    st->set_dataplane_error(dp.error().message());
    st->add_problems("data plane: " + dp.error().message());
  }
  if (st->has_dataplane()) {
    const auto& d = st->dataplane();
    if (d.outbound_enabled()) {
      if (!d.policy_link_up()) st->add_problems("the data plane's policy link to the control plane is down");
      else if (d.policy_version() != cp.policy_version())
        st->add_problems("the data plane applies policy version " + std::to_string(d.policy_version()) + ", the control plane is at " +
                         std::to_string(cp.policy_version()) + " (converging)");
    }
    if (d.spool_free_bytes() > 0 && d.spool_free_bytes() < (64ULL << 20)) st->add_problems("less than 64 MiB free in the spool's file system");
  }
  st->set_healthy(st->problems().empty());
  return r;
}

bool Management::on_base(std::function<void()> fn) {
  bool done = false;
  return tasks_.run<bool>([&fn] {
    fn();
    return true;
  }, &done);
}

v1::Response Management::policy(const v1::PolicyRequest& req) {
  using Op = v1::PolicyRequest;
  v1::Response r;
  auto* out = r.mutable_policy();
  if (req.op() == Op::LIST) {
    std::vector<v1::PolicyEntry> entries;
    uint64_t version = 0;
    if (!on_base([&] {
          version = deps_.table->version();
          for (const auto& d : deps_.table->domains())
            if (auto p = deps_.table->find(d)) entries.push_back(entry_for(*p));
        }))
      return error_response(v1::Error::UNAVAILABLE, "the control plane is stopping");
    out->set_version(version);
    for (auto& e : entries) *out->add_entries() = std::move(e);
    return r;
  }
  const std::string domain = normalize_domain(req.domain());
  if (domain.empty()) return error_response(v1::Error::INVALID_ARGUMENT, "'" + req.domain() + "' is not a domain name");
  if (req.op() == Op::PURGE) {
    bool existed = false;
    uint64_t version = 0;
    if (!on_base([&] {
          existed = deps_.table->purge(domain);
          version = deps_.table->version();
        }))
      return error_response(v1::Error::UNAVAILABLE, "the control plane is stopping");
    if (!existed) return error_response(v1::Error::NOT_FOUND, "no policy for " + domain + " in the table");
    out->set_changed(true);
    out->set_version(version);
    return r;
  }
  // SHOW compiles the domain when the table has no policy for it; REFRESH always compiles it again.
  // Either way: wait for the result.
  uint64_t before = 0;
  if (!on_base([&] {
        auto p = deps_.table->find(domain);
        before = p ? p->version : 0;
        if (req.op() == Op::REFRESH) deps_.table->refresh(domain);
        else if (!p) deps_.table->request(domain);
      }))
    return error_response(v1::Error::UNAVAILABLE, "the control plane is stopping");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::shared_ptr<const policy::DestinationPolicy> p;
  uint64_t version = 0;
  while (true) {
    if (!on_base([&] {
          p = deps_.table->find(domain);
          version = deps_.table->version();
        }))
      return error_response(v1::Error::UNAVAILABLE, "the control plane is stopping");
    if (p && (req.op() == Op::SHOW || p->version > before)) break;
    if (std::chrono::steady_clock::now() > deadline)
      return error_response(v1::Error::FAILED, "no policy for " + domain + " within 30 s (DNS or MTA-STS lookups still running)");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  out->set_changed(req.op() == Op::REFRESH);
  out->set_version(version);
  *out->add_entries() = entry_for(*p);
  return r;
}

v1::Response Management::connector(const v1::ConnectorRequest& req) {
  using Op = v1::ConnectorRequest;
  v1::Response r;
  auto* out = r.mutable_connector();
  out->set_config_file(deps_.config_file);
  config::v1::Config cfg = current_config();
  if (req.op() == Op::LIST) {
    for (const auto& c : cfg.connectors()) *out->add_connectors() = c;
    if (cfg.connectors_size() == 0) *out->add_connectors() = config::default_connector();
    return r;
  }
  if (req.name().empty()) return error_response(v1::Error::INVALID_ARGUMENT, "a connector name is needed");
  const auto it = std::find_if(cfg.connectors().begin(), cfg.connectors().end(), [&](const auto& c) { return c.name() == req.name(); });
  if (it == cfg.connectors().end()) {
    if (req.op() == Op::SHOW && req.name() == config::default_connector().name() && cfg.connectors_size() == 0) {
      *out->add_connectors() = config::default_connector();
      return r;
    }
    return error_response(v1::Error::NOT_FOUND, "no connector '" + req.name() + "' in " + deps_.config_file +
                                                    (cfg.connectors_size() == 0 ? " (only the built-in default applies; add a connectors: section)" : ""));
  }
  if (req.op() == Op::SHOW) {
    *out->add_connectors() = *it;
    return r;
  }
  // SET: change the modes in the file, validate, write atomically, apply.
  config::v1::ConnectorMode dane = it->dane_mode(), sts = it->mta_sts_mode();
  if (req.dane_mode().empty() && req.mta_sts_mode().empty())
    return error_response(v1::Error::INVALID_ARGUMENT, "nothing to set: give --dane-mode and/or --mta-sts-mode");
  if (!req.dane_mode().empty() && !parse_mode(req.dane_mode(), &dane))
    return error_response(v1::Error::INVALID_ARGUMENT, "dane mode must be none, opportunistic or mandatory, not '" + req.dane_mode() + "'");
  if (!req.mta_sts_mode().empty() && !parse_mode(req.mta_sts_mode(), &sts))
    return error_response(v1::Error::INVALID_ARGUMENT, "mta-sts mode must be none, opportunistic or mandatory, not '" + req.mta_sts_mode() + "'");
  std::lock_guard<std::mutex> lock(config_file_mu_);
  std::string text;
  try {
    YAML::Node root = YAML::LoadFile(deps_.config_file);
    YAML::Node list = root["connectors"];
    bool found = false;
    for (size_t i = 0; list && list.IsSequence() && i < list.size(); ++i) {
      YAML::Node c = list[i];
      if (c["name"] && c["name"].as<std::string>() == req.name()) {
        if (!req.dane_mode().empty()) c["dane_mode"] = req.dane_mode();
        if (!req.mta_sts_mode().empty()) c["mta_sts_mode"] = req.mta_sts_mode();
        found = true;
      }
    }
    if (!found) return error_response(v1::Error::FAILED, "connector '" + req.name() + "' is not in " + deps_.config_file + " any more (edited meanwhile?)");
    YAML::Emitter emitter;
    emitter << root;
    text = std::string("# written by mxedgectl connector set (the previous version is ") + deps_.config_file + ".bak)\n" + emitter.c_str() + "\n";
  } catch (const YAML::Exception& e) {
    return error_response(v1::Error::FAILED, "cannot edit " + deps_.config_file + ": " + e.what());
  }
  config::LoadResult loaded = config::load_config_text(text, deps_.config_file);
  if (!loaded.ok()) return error_response(v1::Error::INVALID_ARGUMENT, "the change would make the configuration invalid:\n" + loaded.error_text());
  {
    std::ifstream in(deps_.config_file, std::ios::binary);
    std::stringstream old;
    old << in.rdbuf();
    std::ofstream bak(deps_.config_file + ".bak", std::ios::binary | std::ios::trunc);
    bak << old.str();
    const std::string tmp = deps_.config_file + ".tmp";
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.flush();
    if (!f || !bak) return error_response(v1::Error::FAILED, "cannot write " + tmp + " or the .bak copy");
    f.close();
    if (std::rename(tmp.c_str(), deps_.config_file.c_str()) != 0)
      return error_response(v1::Error::FAILED, "cannot replace " + deps_.config_file + ": " + std::strerror(errno));
  }
  size_t recompiled = 0;
  const config::v1::Config next = *loaded.config;
  if (!on_base([&] { recompiled = deps_.table->set_config(next); }))
    return error_response(v1::Error::UNAVAILABLE, "the control plane is stopping (the file is written; it applies at the next start)");
  log::info("connector.changed").kv("connector", req.name()).kv("dane_mode", config::v1::ConnectorMode_Name(dane))
      .kv("mta_sts_mode", config::v1::ConnectorMode_Name(sts)).kv("recompiled", static_cast<uint64_t>(recompiled));
  for (const auto& c : next.connectors())
    if (c.name() == req.name()) *out->add_connectors() = c;
  out->set_recompiled(static_cast<uint32_t>(recompiled));
  return r;
}

v1::Response Management::reload() {
  v1::Response r;
  auto* out = r.mutable_reload();
  std::string detail;
  bool ok = false;
  {
    std::lock_guard<std::mutex> lock(config_file_mu_);
    if (!on_base([&] { ok = deps_.reload(&detail); })) return error_response(v1::Error::UNAVAILABLE, "the control plane is stopping");
  }
  out->set_controlplane_reloaded(ok);
  out->set_controlplane_detail(detail);
  v1::Request q;
  q.mutable_reload();
  v1::Response dp = forward(q);
  out->set_dataplane_reloaded(dp.has_reload() && dp.reload().dataplane_reloaded());
  out->set_dataplane_detail(dp.has_reload() ? dp.reload().dataplane_detail() : dp.error().message());
  if (!ok) {
    r.mutable_error()->set_code(v1::Error::FAILED);
    r.mutable_error()->set_message("control plane reload rejected: " + detail);
  } else if (dp.error().code() != v1::Error::OK) {
    *r.mutable_error() = dp.error();
  }
  return r;
}

// The analyzer and the wizard make their own resolver and event base on this (the request's)
// thread, from the current configuration: a check never waits for, or disturbs, the policy table.
v1::Response Management::check(const v1::CheckRequest& req) {
  v1::CheckRequest q = req;
  const std::string domain = normalize_domain(req.domain());
  if (domain.empty()) return error_response(v1::Error::INVALID_ARGUMENT, "'" + req.domain() + "' is not a domain name");
  q.set_domain(domain);
  log::info("mgmt.check").kv("domain", domain).kv("probe", !req.no_probe());
  v1::Response r;
  *r.mutable_check() = ::mxedge::analyzer::run_check(current_config(), q);
  return r;
}

v1::Response Management::wizard(const v1::WizardRequest& req) {
  v1::WizardRequest q = req;
  const std::string domain = normalize_domain(req.domain());
  if (domain.empty()) return error_response(v1::Error::INVALID_ARGUMENT, "'" + req.domain() + "' is not a domain name");
  q.set_domain(domain);
  log::info("mgmt.wizard").kv("domain", domain);
  v1::Response r;
  *r.mutable_wizard() = ::mxedge::wizard::run_wizard(current_config(), q);
  return r;
}

}  // namespace mxedge::controlplane
