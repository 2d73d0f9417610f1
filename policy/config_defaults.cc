// Defaults and semantic validation of the configuration. Defaults follow RFC 5321's minima and
// Postfix's long-standing choices where the RFCs leave room.
#include "policy/config_defaults.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "policy/duration.h"
#include "policy/mta_sts.h"
#include "policy/socket_address.h"

namespace mxedge::config {
namespace {

using namespace mxedge::config::v1;

void set_default_duration(google::protobuf::Duration* d, bool present, int64_t seconds) {
  if (!present) d->set_seconds(seconds);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool valid_domain(const std::string& d) {
  if (d.empty() || d.size() > 253) return false;
  size_t label = 0;
  char prev = '.';
  for (char c : d) {
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-') {
      if (label == 0 && c == '-') return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return label > 0 && prev != '-';
}

int64_t millis(const google::protobuf::Duration& d) { return duration_ms(d); }

}  // namespace

void apply_defaults(Config& c) {
  if (c.hostname().empty()) {
    char name[256] = {0};
    if (gethostname(name, sizeof name - 1) == 0 && name[0] != 0) c.set_hostname(name);
    else c.set_hostname("localhost");
  }
  for (int i = 0; i < c.listeners_size(); ++i) {
    Listener* l = c.mutable_listeners(i);
    if (l->name().empty()) l->set_name("listener" + std::to_string(i));
    if (l->tls_mode() == TLS_MODE_UNSPECIFIED) l->set_tls_mode(TLS_MODE_STARTTLS);
    if (l->role() == LISTENER_ROLE_UNSPECIFIED) l->set_role(LISTENER_ROLE_INBOUND);
  }
  for (auto& d : *c.mutable_accepted_domains()) {
    d = lower(d);
    if (!d.empty() && d.back() == '.') d.pop_back();
  }

  NextHop* nh = c.mutable_next_hop();
  if (nh->port() == 0) nh->set_port(25);
  if (nh->tls() == NEXT_HOP_TLS_UNSPECIFIED) nh->set_tls(NEXT_HOP_TLS_OPPORTUNISTIC);
  if (nh->connections_per_worker() == 0) nh->set_connections_per_worker(2);
  set_default_duration(nh->mutable_connect_timeout(), nh->has_connect_timeout(), 30);
  set_default_duration(nh->mutable_command_timeout(), nh->has_command_timeout(), 300);
  set_default_duration(nh->mutable_retry_min(), nh->has_retry_min(), 30);
  set_default_duration(nh->mutable_retry_max(), nh->has_retry_max(), 600);

  Limits* lim = c.mutable_limits();
  if (lim->command_line_length() == 0) lim->set_command_line_length(2048);
  if (lim->text_line_length() == 0) lim->set_text_line_length(1000);
  if (lim->recipients_per_message() == 0) lim->set_recipients_per_message(1000);
  if (lim->message_size() == 0) lim->set_message_size(50ULL << 20);
  if (lim->connections_per_source() == 0) lim->set_connections_per_source(50);
  if (lim->sessions_total() == 0) lim->set_sessions_total(20000);
  set_default_duration(lim->mutable_command_timeout(), lim->has_command_timeout(), 300);
  set_default_duration(lim->mutable_data_timeout(), lim->has_data_timeout(), 180);
  set_default_duration(lim->mutable_data_rate_grace(), lim->has_data_rate_grace(), 30);
  if (lim->errors_per_session() == 0) lim->set_errors_per_session(20);
  set_default_duration(lim->mutable_greeting_delay(), lim->has_greeting_delay(), 0);

  Workers* w = c.mutable_workers();
  if (w->cores_size() == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < std::max(1L, n); ++i) w->add_cores(static_cast<uint32_t>(i));
  }

  Spool* s = c.mutable_spool();
  if (s->memory_body_limit() == 0) s->set_memory_body_limit(64 << 10);
  if (s->segment_size() == 0) s->set_segment_size(64ULL << 20);
  // min_free_bytes 0 is a valid choice (tests on a tiny tmpfs); only the default is non-zero, so the
  // loader cannot tell "unset" from "0" here: the default lives in the YAML example and the demo.

  Dpdk* dp = c.mutable_dpdk();
  if (!dp->ports().empty()) {
    if (dp->tap_prefix().empty()) dp->set_tap_prefix("mxtap");
    if (dp->mbufs() == 0) dp->set_mbufs(8191);
    if (dp->burst() == 0) dp->set_burst(32);
    if (dp->lcores().empty()) {
      const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
      dp->add_lcores(online > 1 ? static_cast<uint32_t>(online - 1) : 0u);
    }
  }

  Xdp* x = c.mutable_xdp();
  if (!x->interfaces().empty() || !dp->ports().empty()) {
    if (x->attach_mode() == XDP_ATTACH_MODE_UNSPECIFIED) x->set_attach_mode(XDP_ATTACH_MODE_NATIVE_OR_GENERIC);
    if (x->pin_dir().empty()) x->set_pin_dir("/sys/fs/bpf/mxedge");
    if (x->smtp_ports().empty()) {
      for (uint32_t p : {25u, 465u, 587u}) x->add_smtp_ports(p);
    }
    if (!x->has_syn_rate()) x->set_syn_rate(20);
    if (!x->has_syn_burst()) x->set_syn_burst(std::max<uint32_t>(1, 2 * x->syn_rate()));
    if (!x->has_new_source_syn_rate()) x->set_new_source_syn_rate(x->syn_rate() > 0 ? 1000 : 0);
    if (!x->has_new_source_syn_burst())
      x->set_new_source_syn_burst(std::max<uint32_t>(1, 2 * x->new_source_syn_rate()));
    if (!x->has_steering()) x->set_steering(true);
    if (x->cpumap_qsize() == 0) x->set_cpumap_qsize(2048);
  }

  Resolver* r = c.mutable_resolver();
  if (r->trust_anchor_file().empty()) r->set_trust_anchor_file("/usr/share/dns/root.key");
  set_default_duration(r->mutable_query_timeout(), r->has_query_timeout(), 10);
  if (r->retries() == 0) r->set_retries(3);
  if (r->edns_buffer_size() == 0) r->set_edns_buffer_size(1232);
  if (r->cache_size() == 0) r->set_cache_size(32ULL << 20);
  set_default_duration(r->mutable_max_ttl(), r->has_max_ttl(), 86400);
  set_default_duration(r->mutable_max_negative_ttl(), r->has_max_negative_ttl(), 3600);
  set_default_duration(r->mutable_bogus_ttl(), r->has_bogus_ttl(), 60);
  set_default_duration(r->mutable_failure_ttl(), r->has_failure_ttl(), 5);
  if (r->max_mx_hosts() == 0) r->set_max_mx_hosts(10);

  MtaSts* m = c.mutable_mta_sts();
  if (m->cache_file().empty()) m->set_cache_file("/var/lib/mxedge/mta-sts.db");
  set_default_duration(m->mutable_connect_timeout(), m->has_connect_timeout(), 10);
  set_default_duration(m->mutable_fetch_timeout(), m->has_fetch_timeout(), 30);
  set_default_duration(m->mutable_txt_recheck(), m->has_txt_recheck(), 300);
  set_default_duration(m->mutable_backoff_min(), m->has_backoff_min(), 300);
  set_default_duration(m->mutable_backoff_max(), m->has_backoff_max(), 3600);
  set_default_duration(m->mutable_evict_unused(), m->has_evict_unused(), 30 * 86400);

  for (int i = 0; i < c.connectors_size(); ++i) {
    Connector* k = c.mutable_connectors(i);
    if (k->name().empty()) k->set_name("connector" + std::to_string(i));
    for (auto& d : *k->mutable_domains()) d = lower(d);
    if (k->dane_mode() == CONNECTOR_MODE_UNSPECIFIED) k->set_dane_mode(CONNECTOR_MODE_OPPORTUNISTIC);
    if (k->mta_sts_mode() == CONNECTOR_MODE_UNSPECIFIED) k->set_mta_sts_mode(CONNECTOR_MODE_OPPORTUNISTIC);
    if (k->min_tls_version().empty()) k->set_min_tls_version("TLSv1.2");
    if (!k->has_allow_cleartext()) k->set_allow_cleartext(true);
  }

  Management* mg = c.mutable_management();
  if (mg->socket().empty()) mg->set_socket("/run/mxedge/mgmt.sock");
  if (mg->dataplane_socket().empty()) mg->set_dataplane_socket("/run/mxedge/dataplane.sock");
  if (mg->admin_group().empty()) mg->set_admin_group("mxadmin");

  MtaStsPublish* sp = c.mutable_mta_sts_publish();
  if (sp->mode() == STS_PUBLISH_MODE_UNSPECIFIED) sp->set_mode(STS_PUBLISH_MODE_TESTING);
  set_default_duration(sp->mutable_max_age(), sp->has_max_age(), sp->mode() == STS_PUBLISH_MODE_ENFORCE ? 7 * 86400 : 86400);
  for (auto& name : *sp->mutable_mx()) {
    name = lower(name);
    if (!name.empty() && name.back() == '.') name.pop_back();
  }
  if (sp->mx().empty()) sp->add_mx(lower(c.hostname()));

  TlsRptReports* tr = c.mutable_tlsrpt()->mutable_reports();
  {
    std::string host = lower(c.hostname());
    size_t dot = host.find('.');
    std::string domain = dot == std::string::npos ? host : host.substr(dot + 1);
    if (tr->submitter().empty()) tr->set_submitter(domain);
    if (tr->organization_name().empty()) tr->set_organization_name(tr->submitter());
    if (tr->from().empty()) tr->set_from("tlsrpt-noreply@" + tr->submitter());
    if (tr->contact_info().empty()) tr->set_contact_info(tr->from());
  }
  set_default_duration(tr->mutable_spread(), tr->has_spread(), 4 * 3600);
  if (tr->state_dir().empty()) tr->set_state_dir("/var/lib/mxedge/tlsrpt");
  set_default_duration(tr->mutable_retry_min(), tr->has_retry_min(), 300);
  set_default_duration(tr->mutable_retry_max(), tr->has_retry_max(), 7200);
  set_default_duration(tr->mutable_give_up_after(), tr->has_give_up_after(), 2 * 86400);
  if (tr->max_report_size() == 0) tr->set_max_report_size(8ULL << 20);
  TlsRptInbound* ti = c.mutable_tlsrpt()->mutable_inbound();
  for (auto& mb : *ti->mutable_mailboxes()) mb = lower(mb);
  if (ti->max_message_size() == 0) ti->set_max_message_size(4ULL << 20);
  set_default_duration(ti->mutable_retention(), ti->has_retention(), 90 * 86400);

  Outbound* ob = c.mutable_outbound();
  if (ob->policy_socket().empty()) ob->set_policy_socket("/run/mxedge/policy.sock");
  if (ob->policy_state_file().empty()) ob->set_policy_state_file("/var/lib/mxedge/policy.state");
  set_default_duration(ob->mutable_policy_idle(), ob->has_policy_idle(), 3600);
  set_default_duration(ob->mutable_sts_maintenance(), ob->has_sts_maintenance(), 60);
  set_default_duration(ob->mutable_retry_min(), ob->has_retry_min(), 60);
  set_default_duration(ob->mutable_retry_max(), ob->has_retry_max(), 3600);
  if (ob->connections_per_destination() == 0) ob->set_connections_per_destination(2);
  set_default_duration(ob->mutable_connect_timeout(), ob->has_connect_timeout(), 30);
  set_default_duration(ob->mutable_command_timeout(), ob->has_command_timeout(), 300);
  set_default_duration(ob->mutable_policy_wait(), ob->has_policy_wait(), 30);
  set_default_duration(ob->mutable_queue_lifetime(), ob->has_queue_lifetime(), 86400);
  set_default_duration(ob->mutable_delay_warning(), ob->has_delay_warning(), 4 * 3600);
  set_default_duration(ob->mutable_trace_retention(), ob->has_trace_retention(), 7 * 86400);

  Logging* lg = c.mutable_logging();
  if (lg->format() == LOG_FORMAT_UNSPECIFIED) lg->set_format(LOG_FORMAT_LOGFMT);
  if (lg->level() == LOG_LEVEL_UNSPECIFIED) lg->set_level(LOG_LEVEL_INFO);
}

void validate(const Config& c, const ProblemSink& problem, unsigned files) {
  const bool dp_files = (files & kFilesDataPlane) != 0;
  const bool cp_files = (files & kFilesControlPlane) != 0;
  if (c.listeners_size() == 0) problem("listeners", "at least one listener is required");
  std::set<std::string> names;
  std::set<std::string> addresses;
  for (int i = 0; i < c.listeners_size(); ++i) {
    const Listener& l = c.listeners(i);
    const std::string p = "listeners[" + std::to_string(i) + "]";
    if (!names.insert(l.name()).second) problem(p + ".name", "listener name '" + l.name() + "' is used twice");
    auto addr = SocketAddress::parse(l.address());
    if (l.address().empty()) {
      problem(p, "listener '" + l.name() + "' needs an address such as \"0.0.0.0:25\" or \"[::]:25\"");
    } else if (!addr) {
      problem(p + ".address", "invalid listen address '" + l.address() + "' (expected IP:PORT or [IPv6]:PORT)");
    } else if (!addresses.insert(addr->to_string()).second) {
      problem(p + ".address", "address " + addr->to_string() + " is used by two listeners");
    }
    if (l.tls_mode() == TLS_MODE_NONE) {
      if (l.require_tls()) problem(p + ".require_tls", "require_tls needs tls_mode starttls or implicit");
    } else if (l.certificates_size() == 0) {
      problem(p, "listener '" + l.name() + "' offers TLS but has no certificates");
    }
    if (dp_files && !l.client_ca_file().empty() && access(l.client_ca_file().c_str(), R_OK) != 0)
      problem(p + ".client_ca_file", "cannot read client CA file " + l.client_ca_file());
    if (l.require_client_certificate()) {
      if (l.client_ca_file().empty()) problem(p + ".require_client_certificate", "require_client_certificate needs client_ca_file");
      if (l.tls_mode() == TLS_MODE_NONE) problem(p + ".require_client_certificate", "require_client_certificate needs tls_mode starttls or implicit");
    }
    if (l.role() == LISTENER_ROLE_OUTBOUND) {
      if (!c.outbound().enabled()) problem(p + ".role", "listener '" + l.name() + "' is an outbound intake but outbound.enabled is false");
      if (l.allowed_networks_size() == 0)
        problem(p + ".allowed_networks", "outbound intake listener '" + l.name() + "' needs allowed_networks (never an open relay)");
    } else if (l.allowed_networks_size() > 0) {
      problem(p + ".allowed_networks", "allowed_networks applies to outbound intake listeners only");
    }
    for (int j = 0; j < l.allowed_networks_size(); ++j) {
      const std::string& n = l.allowed_networks(j);
      const size_t slash = n.find('/');
      const std::string ip = n.substr(0, slash);
      const bool v4 = SocketAddress::from_ip_port(ip, 0).has_value() && ip.find(':') == std::string::npos;
      bool ok = SocketAddress::from_ip_port(ip, 0).has_value();
      if (ok && slash != std::string::npos) {
        const std::string len = n.substr(slash + 1);
        ok = !len.empty() && len.size() <= 3 && std::all_of(len.begin(), len.end(), ::isdigit) && std::stoul(len) <= (v4 ? 32u : 128u);
      }
      if (!ok) problem(p + ".allowed_networks[" + std::to_string(j) + "]", "invalid network '" + n + "' (expected ADDRESS or ADDRESS/LENGTH)");
    }
    for (int j = 0; j < l.certificates_size(); ++j) {
      const Certificate& cert = l.certificates(j);
      const std::string cp = p + ".certificates[" + std::to_string(j) + "]";
      if (cert.cert_file().empty()) problem(cp, "cert_file is required");
      else if (dp_files && access(cert.cert_file().c_str(), R_OK) != 0) problem(cp + ".cert_file", "cannot read certificate file " + cert.cert_file());
      if (cert.key_file().empty()) problem(cp, "key_file is required");
      else if (dp_files && access(cert.key_file().c_str(), R_OK) != 0) problem(cp + ".key_file", "cannot read key file " + cert.key_file());
    }
  }

  if (c.accepted_domains_size() == 0) problem("accepted_domains", "at least one accepted domain is required (mxedge is never an open relay)");
  for (int i = 0; i < c.accepted_domains_size(); ++i) {
    if (!valid_domain(c.accepted_domains(i)))
      problem("accepted_domains[" + std::to_string(i) + "]", "invalid domain name '" + c.accepted_domains(i) + "'");
  }

  const NextHop& nh = c.next_hop();
  if (nh.host().empty()) problem("next_hop", "next_hop.host is required (the internal mail server)");
  if (nh.port() > 65535) problem("next_hop.port", "port must be 1-65535");
  if (millis(nh.retry_min()) <= 0) problem("next_hop.retry_min", "retry_min must be positive");
  if (millis(nh.retry_max()) < millis(nh.retry_min())) problem("next_hop.retry_max", "retry_max must not be below retry_min");
  if (millis(nh.connect_timeout()) <= 0) problem("next_hop.connect_timeout", "connect_timeout must be positive");
  if (millis(nh.command_timeout()) <= 0) problem("next_hop.command_timeout", "command_timeout must be positive");
  if (dp_files && nh.tls() == NEXT_HOP_TLS_VERIFY && !nh.ca_file().empty() && access(nh.ca_file().c_str(), R_OK) != 0)
    problem("next_hop.ca_file", "cannot read CA file " + nh.ca_file());

  const Limits& lim = c.limits();
  if (lim.command_line_length() < 512) problem("limits.command_line_length", "command_line_length must be at least 512 (RFC 5321 4.5.3.1.4)");
  if (lim.text_line_length() < 1000) problem("limits.text_line_length", "text_line_length must be at least 1000 (RFC 5321 4.5.3.1.6)");
  if (lim.message_size() < 1024) problem("limits.message_size", "message_size must be at least 1024 bytes");
  if (millis(lim.command_timeout()) <= 0) problem("limits.command_timeout", "command_timeout must be positive");
  if (millis(lim.data_timeout()) <= 0) problem("limits.data_timeout", "data_timeout must be positive");

  long ncpu = sysconf(_SC_NPROCESSORS_CONF);
  std::set<uint32_t> cores;
  for (int i = 0; i < c.workers().cores_size(); ++i) {
    uint32_t core = c.workers().cores(i);
    const std::string p = "workers.cores[" + std::to_string(i) + "]";
    if (ncpu > 0 && core >= static_cast<uint32_t>(ncpu)) problem(p, "CPU " + std::to_string(core) + " does not exist (this machine has " + std::to_string(ncpu) + ")");
    if (!cores.insert(core).second) problem(p, "CPU " + std::to_string(core) + " is listed twice");
  }

  const Xdp& x = c.xdp();
  std::set<uint32_t> ports;
  for (int i = 0; i < x.smtp_ports_size(); ++i) {
    const std::string p = "xdp.smtp_ports[" + std::to_string(i) + "]";
    if (x.smtp_ports(i) == 0 || x.smtp_ports(i) > 65535) problem(p, "port must be 1-65535");
    if (!ports.insert(x.smtp_ports(i)).second) problem(p, "port " + std::to_string(x.smtp_ports(i)) + " is listed twice");
  }
  if (x.smtp_ports_size() > 8) problem("xdp.smtp_ports", "at most 8 SMTP ports");
  for (int i = 0; i < x.interfaces_size(); ++i) {
    const std::string& n = x.interfaces(i);
    if (n.empty() || n.size() > 15 || n.find('/') != std::string::npos)
      problem("xdp.interfaces[" + std::to_string(i) + "]", "invalid interface name '" + n + "'");
  }
  if (x.has_syn_rate() && x.syn_rate() > 0 && x.has_syn_burst() && x.syn_burst() == 0)
    problem("xdp.syn_burst", "syn_burst must be at least 1 when syn_rate is set");
  if (x.has_new_source_syn_rate() && x.new_source_syn_rate() > 0) {
    if (x.has_new_source_syn_burst() && x.new_source_syn_burst() == 0)
      problem("xdp.new_source_syn_burst", "new_source_syn_burst must be at least 1 when new_source_syn_rate is set");
    if (x.has_syn_rate() && x.syn_rate() == 0)
      problem("xdp.new_source_syn_rate",
              "the new-source budget needs the per-source limit (syn_rate > 0): a new source is one without a SYN bucket");
  }
  if (x.new_source_syn_rate() > 1000000000u) problem("xdp.new_source_syn_rate", "above 1e9 per second");
  if (!x.pin_dir().empty() && x.pin_dir().front() != '/') problem("xdp.pin_dir", "pin_dir must be an absolute path");

  const Dpdk& dk = c.dpdk();
  if (!dk.ports().empty() && !x.interfaces().empty())
    problem("dpdk.ports", "the DPDK and XDP fast paths are exclusive: set dpdk.ports or xdp.interfaces, not both");
  {
    std::set<std::string> port_names;
    for (int i = 0; i < dk.ports_size(); ++i)
      if (dk.ports(i).empty() || !port_names.insert(dk.ports(i)).second)
        problem("dpdk.ports[" + std::to_string(i) + "]", "empty or repeated port name '" + dk.ports(i) + "'");
    std::set<uint32_t> lcores;
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < dk.lcores_size(); ++i) {
      const std::string p = "dpdk.lcores[" + std::to_string(i) + "]";
      if (online > 0 && dk.lcores(i) >= static_cast<uint32_t>(online)) problem(p, "CPU " + std::to_string(dk.lcores(i)) + " does not exist (this machine has " + std::to_string(online) + ")");
      if (!lcores.insert(dk.lcores(i)).second) problem(p, "CPU " + std::to_string(dk.lcores(i)) + " is listed twice");
    }
    if (dk.burst() > 256) problem("dpdk.burst", "burst must be 1-256");
    if (dk.tap_prefix().size() > 12) problem("dpdk.tap_prefix", "tap_prefix must be at most 12 characters (interface names are 15)");
    for (const auto& a : dk.eal_args())
      if (a == "-l" || a == "--lcores" || a == "-c" || a == "--main-lcore")
        problem("dpdk.eal_args", "'" + a + "' is set from dpdk.lcores; leave it out of eal_args");
  }

  const Resolver& r = c.resolver();
  if (r.trust_anchor_file().empty() || r.trust_anchor_file().front() != '/')
    problem("resolver.trust_anchor_file", "trust_anchor_file must be an absolute path");
  if (!r.root_hints_file().empty() && r.root_hints_file().front() != '/')
    problem("resolver.root_hints_file", "root_hints_file must be an absolute path");
  for (int i = 0; i < r.forwarders_size(); ++i) {
    const std::string& f = r.forwarders(i);
    const size_t at = f.find('@');
    const std::string host = f.substr(0, at);
    bool ok = SocketAddress::parse(host + ":53").has_value() || SocketAddress::parse("[" + host + "]:53").has_value();
    if (at != std::string::npos) {
      const std::string port = f.substr(at + 1);
      ok = ok && !port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), ::isdigit) &&
           std::stoul(port) >= 1 && std::stoul(port) <= 65535;
    }
    if (!ok) problem("resolver.forwarders[" + std::to_string(i) + "]", "invalid forwarder '" + f + "' (expected ADDRESS or ADDRESS@PORT)");
  }
  if (millis(r.query_timeout()) < 100) problem("resolver.query_timeout", "query_timeout must be at least 100ms");
  if (r.retries() > 10) problem("resolver.retries", "retries must be between 1 and 10");
  if (r.edns_buffer_size() < 512 || r.edns_buffer_size() > 4096)
    problem("resolver.edns_buffer_size", "edns_buffer_size must be between 512 and 4096");
  if (r.max_mx_hosts() > 100) problem("resolver.max_mx_hosts", "max_mx_hosts must be at most 100");
  for (int i = 0; i < r.root_servers_size(); ++i) {
    const std::string& f = r.root_servers(i);
    const std::string host = f.substr(0, f.find('@'));
    if (!SocketAddress::parse(host + ":53") && !SocketAddress::parse("[" + host + "]:53"))
      problem("resolver.root_servers[" + std::to_string(i) + "]", "invalid root server '" + f + "' (expected ADDRESS or ADDRESS@PORT)");
  }
  for (int i = 0; i < r.nodefault_zones_size(); ++i) {
    std::string z = r.nodefault_zones(i);
    if (!z.empty() && z.back() == '.') z.pop_back();
    if (!valid_domain(z)) problem("resolver.nodefault_zones[" + std::to_string(i) + "]", "invalid zone '" + r.nodefault_zones(i) + "'");
  }

  const MtaSts& m = c.mta_sts();
  if (m.cache_file().empty() || m.cache_file().front() != '/')
    problem("mta_sts.cache_file", "cache_file must be an absolute path");
  if (!m.ca_file().empty() && m.ca_file().front() != '/') problem("mta_sts.ca_file", "ca_file must be an absolute path");
  if (!m.proxy().empty() && !(m.proxy().starts_with("http://") || m.proxy().starts_with("https://") ||
                              m.proxy().starts_with("socks5://") || m.proxy().starts_with("socks5h://")))
    problem("mta_sts.proxy", "proxy must be an http://, https://, socks5:// or socks5h:// URL");
  if (millis(m.connect_timeout()) < 100) problem("mta_sts.connect_timeout", "connect_timeout must be at least 100ms");
  if (millis(m.fetch_timeout()) < millis(m.connect_timeout()))
    problem("mta_sts.fetch_timeout", "fetch_timeout must not be shorter than connect_timeout");
  if (m.backoff_min().seconds() < 300)
    problem("mta_sts.backoff_min", "backoff_min must be at least 5m (RFC 8461 senders must not hammer policy hosts)");
  if (m.backoff_max().seconds() < m.backoff_min().seconds())
    problem("mta_sts.backoff_max", "backoff_max must not be shorter than backoff_min");

  std::set<std::string> connector_names, connector_domains;
  for (int i = 0; i < c.connectors_size(); ++i) {
    const Connector& k = c.connectors(i);
    const std::string p = "connectors[" + std::to_string(i) + "]";
    if (!connector_names.insert(k.name()).second) problem(p + ".name", "connector name '" + k.name() + "' is used twice");
    if (k.domains_size() == 0) problem(p + ".domains", "connector '" + k.name() + "' needs at least one domain (\"*\" for any)");
    for (int j = 0; j < k.domains_size(); ++j) {
      const std::string& d = k.domains(j);
      const std::string dp = p + ".domains[" + std::to_string(j) + "]";
      const bool ok = d == "*" || valid_domain(d.starts_with('.') ? d.substr(1) : d);
      if (!ok) problem(dp, "invalid domain '" + d + "' (expected example.com, .example.com or *)");
      else if (!connector_domains.insert(d).second) problem(dp, "domain '" + d + "' is served by two connectors");
    }
    if (!k.smart_host().empty()) {
      const std::string& h = k.smart_host();
      const bool ok = SocketAddress::parse(h).has_value() || valid_domain(h) ||
                      (h.find(':') != std::string::npos && valid_domain(h.substr(0, h.rfind(':'))) &&
                       SocketAddress::parse("127.0.0.1" + h.substr(h.rfind(':'))).has_value());
      if (!ok) problem(p + ".smart_host", "invalid smart_host '" + h + "' (expected host, host:port or [IPv6]:port)");
    }
    if (k.min_tls_version() != "TLSv1.2" && k.min_tls_version() != "TLSv1.3")
      problem(p + ".min_tls_version", "min_tls_version must be TLSv1.2 or TLSv1.3 (older versions are not offered)");
    if (k.mta_sts_mode() == CONNECTOR_MODE_MANDATORY && !k.smart_host().empty())
      problem(p + ".mta_sts_mode", "mta_sts_mode mandatory needs delivery by MX (MTA-STS constrains MX hosts, not a smart host)");
  }

  for (const auto& [path, value] : {std::pair<std::string, std::string>{"management.socket", c.management().socket()},
                                    {"management.dataplane_socket", c.management().dataplane_socket()}}) {
    if (value.front() != '/') problem(path, path.substr(11) + " must be an absolute path");
    else if (value.size() > 107) problem(path, path.substr(11) + " is longer than a Unix socket path may be (107)");
  }
  if (c.management().socket() == c.management().dataplane_socket()) problem("management.dataplane_socket", "dataplane_socket must differ from socket");
  if (c.management().socket() == c.outbound().policy_socket() || c.management().dataplane_socket() == c.outbound().policy_socket())
    problem("management.socket", "the management sockets must differ from outbound.policy_socket");
  const Outbound& ob = c.outbound();
  if (ob.policy_socket().front() != '/') problem("outbound.policy_socket", "policy_socket must be an absolute path");
  else if (ob.policy_socket().size() > 107) problem("outbound.policy_socket", "policy_socket is longer than a Unix socket path may be (107)");
  if (ob.policy_state_file().front() != '/') problem("outbound.policy_state_file", "policy_state_file must be an absolute path");
  if (millis(ob.policy_idle()) < 1000) problem("outbound.policy_idle", "policy_idle must be at least 1s");
  if (millis(ob.sts_maintenance()) < 1000) problem("outbound.sts_maintenance", "sts_maintenance must be at least 1s");
  if (dp_files && !ob.ca_file().empty() && access(ob.ca_file().c_str(), R_OK) != 0) problem("outbound.ca_file", "cannot read CA file " + ob.ca_file());
  if (millis(ob.retry_min()) <= 0) problem("outbound.retry_min", "retry_min must be positive");
  if (millis(ob.retry_max()) < millis(ob.retry_min())) problem("outbound.retry_max", "retry_max must not be below retry_min");
  if (ob.connections_per_destination() > 100) problem("outbound.connections_per_destination", "connections_per_destination must be 1-100");
  if (millis(ob.connect_timeout()) <= 0 || millis(ob.command_timeout()) <= 0 || millis(ob.policy_wait()) <= 0)
    problem("outbound", "connect_timeout, command_timeout and policy_wait must be positive");
  if (millis(ob.queue_lifetime()) < 1000) problem("outbound.queue_lifetime", "queue_lifetime must be at least 1s");
  if (millis(ob.delay_warning()) <= 0) problem("outbound.delay_warning", "delay_warning must be positive");
  if (ob.trace_retention().seconds() < 60) problem("outbound.trace_retention", "trace_retention must be at least 1m");

  if (!c.stats().listen().empty() && !SocketAddress::parse(c.stats().listen()))
    problem("stats.listen", "invalid stats address '" + c.stats().listen() + "' (expected IP:PORT or [IPv6]:PORT)");

  const MtaStsPublish& sp = c.mta_sts_publish();
  if (sp.max_age().seconds() < 1 || sp.max_age().seconds() > policy::kStsMaxAge)
    problem("mta_sts_publish.max_age", "max_age must be between 1s and 31557600s (RFC 8461 3.2), got " +
                                           std::to_string(sp.max_age().seconds()) + "s");
  if (!sp.listen().empty()) {
    if (!SocketAddress::parse(sp.listen()))
      problem("mta_sts_publish.listen", "invalid listen address '" + sp.listen() + "' (expected IP:PORT or [IPv6]:PORT)");
    if (sp.certificates_size() == 0)
      problem("mta_sts_publish.certificates", "mta_sts_publish.listen needs at least one certificate (the policy is served over HTTPS only)");
    // With `listen` unset the mx default (hostname) is not checked: nothing is served.
    for (int i = 0; i < sp.mx_size(); ++i) {
      const std::string& name = sp.mx(i);
      if (!policy::is_a_label_domain(name.starts_with("*.") ? name.substr(2) : name))
        problem("mta_sts_publish.mx[" + std::to_string(i) + "]", "invalid mx '" + name + "' (expected a host name or *.domain)");
    }
  }
  for (int j = 0; j < sp.certificates_size(); ++j) {
    const Certificate& cert = sp.certificates(j);
    const std::string cp = "mta_sts_publish.certificates[" + std::to_string(j) + "]";
    if (cert.cert_file().empty()) problem(cp, "cert_file is required");
    else if (cp_files && access(cert.cert_file().c_str(), R_OK) != 0) problem(cp + ".cert_file", "cannot read certificate file " + cert.cert_file());
    if (cert.key_file().empty()) problem(cp, "key_file is required");
    else if (cp_files && access(cert.key_file().c_str(), R_OK) != 0) problem(cp + ".key_file", "cannot read key file " + cert.key_file());
  }

  const TlsRptReports& tr = c.tlsrpt().reports();
  if (tr.enabled()) {
    if (!policy::is_a_label_domain(tr.submitter()))
      problem("tlsrpt.reports.submitter", "invalid submitter domain '" + tr.submitter() + "' (set it, or give hostname a domain)");
    if (tr.from().find('@') == std::string::npos) problem("tlsrpt.reports.from", "from must be an email address, got '" + tr.from() + "'");
    if (tr.state_dir().empty() || tr.state_dir().front() != '/')
      problem("tlsrpt.reports.state_dir", "state_dir must be an absolute path");
    if (!c.outbound().enabled())
      problem("tlsrpt.reports.enabled", "reports are about outbound sessions: outbound.enabled must be true");
  }
  if (tr.spread().seconds() < 0 || tr.spread().seconds() > 86400)
    problem("tlsrpt.reports.spread", "spread must be between 0s and 24h");
  if (millis(tr.retry_min()) <= 0 || millis(tr.retry_max()) < millis(tr.retry_min()))
    problem("tlsrpt.reports", "retry_min must be positive and retry_max at least retry_min");
  if (cp_files && !tr.ca_file().empty() && access(tr.ca_file().c_str(), R_OK) != 0)
    problem("tlsrpt.reports.ca_file", "cannot read CA file " + tr.ca_file());
  for (int i = 0; i < c.tlsrpt().inbound().mailboxes_size(); ++i) {
    const std::string& mb = c.tlsrpt().inbound().mailboxes(i);
    size_t at = mb.rfind('@');
    if (at == std::string::npos || at == 0 || !policy::is_a_label_domain(mb.substr(at + 1)))
      problem("tlsrpt.inbound.mailboxes[" + std::to_string(i) + "]", "invalid mailbox '" + mb + "' (expected local@domain)");
  }

  if (c.spool().directory().empty()) problem("spool", "spool.directory is required");
  else if (c.spool().directory().front() != '/') problem("spool.directory", "spool.directory must be an absolute path");
  if (c.spool().segment_size() < (1 << 20)) problem("spool.segment_size", "segment_size must be at least 1MiB");
}

}  // namespace mxedge::config
