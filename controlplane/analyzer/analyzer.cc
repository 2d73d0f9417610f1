#include "controlplane/analyzer/analyzer.h"

#include <arpa/inet.h>
#include <event2/event.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <optional>

#include "controlplane/analyzer/verdict.h"
#include "controlplane/mta_sts/mta_sts_config.h"
#include "controlplane/mta_sts/sts_client.h"
#include "controlplane/policy_compiler/compiler.h"
#include "controlplane/push/policy_table.h"
#include "controlplane/resolver/resolver_config.h"
#include "policy/config_defaults.h"
#include "policy/connectors.h"
#include "policy/duration.h"

namespace mxedge::analyzer {
namespace {

using mgmt::v1::CheckReport;
using mgmt::v1::Finding;
using resolver::DestinationResult;
using resolver::MxHost;
using resolver::Security;
using Clock = std::chrono::steady_clock;
namespace v1 = config::v1;

constexpr auto kOk = Finding::SEVERITY_OK;
constexpr auto kInfo = Finding::SEVERITY_INFO;
constexpr auto kWarn = Finding::SEVERITY_WARNING;
constexpr auto kFail = Finding::SEVERITY_ERROR;

Finding* add(CheckReport& r, Finding::Severity sev, std::string section, std::string subject, std::string message) {
  Finding* f = r.add_findings();
  f->set_severity(sev);
  f->set_section(std::move(section));
  f->set_subject(std::move(subject));
  f->set_message(std::move(message));
  return f;
}

std::string sec(Security s) { return std::string(resolver::to_string(s)); }

std::string join(const std::vector<std::string>& v, std::string_view sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : std::string(sep)) + s;
  return out;
}

std::string hex(const std::vector<uint8_t>& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : d) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 15]);
  }
  return s;
}

std::string target(const std::string& host, const std::string& address, uint32_t port) {
  return host + " [" + address + "]:" + std::to_string(port);
}

// Everything the asynchronous phase gathers.
struct Gathered {
  resolver::DestinationResolver::Result dest;
  std::optional<mta_sts::StsResult> sts;
  resolver::Resolver::Result txt;
  bool want_smart = false;
  resolver::DestinationResolver::Result smart;  // the configured connector's smart host
  bool done() const { return dest && sts && txt && (!want_smart || smart); }
};

// ---- DNS ------------------------------------------------------------------------------------------

void report_dns(const DestinationResult& d, CheckReport& r) {
  auto* mx = r.mutable_mx();
  mx->set_state(std::string(resolver::to_string(d.mx_state)));
  mx->set_dnssec(sec(d.mx_security));
  mx->set_why(d.why);
  mx->set_ttl(d.ttl);
  mx->set_truncated(d.hosts_truncated);
  for (const MxHost& h : d.hosts) {
    auto* rec = mx->add_records();
    rec->set_preference(h.preference);
    rec->set_host(h.name);
  }

  const std::string& domain = d.domain;
  switch (d.mx_state) {
    case resolver::MxState::kRecords: {
      std::vector<std::string> lines;
      for (const MxHost& h : d.hosts) lines.push_back(std::to_string(h.preference) + " " + h.name);
      const std::string n = std::to_string(d.hosts.size()) + " host(s)";
      Finding* f = d.mx_security == Security::kSecure
                       ? add(r, kOk, "dns", domain, "MX " + domain + ": " + n + ", DNSSEC secure")
                       : add(r, kWarn, "dns", domain,
                             "MX " + domain + ": " + n + ", DNSSEC " + sec(d.mx_security) +
                                 ": the MX choice is not protected (mandatory DANE defers)");
      for (auto& l : lines) f->add_details(l);
      if (d.hosts_truncated)
        add(r, kWarn, "dns", domain, "more MX hosts than resolver.max_mx_hosts; the rest are not checked");
      break;
    }
    case resolver::MxState::kNoMx:
      add(r, kWarn, "dns", domain,
          "MX " + domain + ": none (DNSSEC " + sec(d.mx_security) +
              "): the domain itself is the mail host (RFC 5321 §5.1)");
      break;
    case resolver::MxState::kNullMx:
      add(r, kFail, "dns", domain, "MX " + domain + ": null MX (RFC 7505): the domain accepts no mail");
      break;
    case resolver::MxState::kNxDomain:
      add(r, kFail, "dns", domain,
          "MX " + domain + ": NXDOMAIN (DNSSEC " + sec(d.mx_security) + "): the domain does not exist");
      break;
    case resolver::MxState::kBogus:
      add(r, kFail, "dns", domain,
          "MX " + domain + ": DNSSEC bogus" + (d.why.empty() ? "" : " (" + d.why + ")") +
              ": the answer may be forged, delivery defers");
      break;
    case resolver::MxState::kFailure:
      add(r, kFail, "dns", domain, "MX " + domain + ": lookup failed" + (d.why.empty() ? "" : " (" + d.why + ")"));
      break;
  }

  for (const MxHost& h : d.hosts) {
    auto* hc = r.add_hosts();
    hc->set_name(h.name);
    hc->set_preference(h.preference);
    for (const auto& a : h.addresses()) hc->add_addresses(a);
    hc->set_address_dnssec(sec(h.address_security));
    hc->set_address_why(h.address_why);
    const std::string& cn = !h.a.canonical_name.empty() ? h.a.canonical_name : h.aaaa.canonical_name;
    if (!cn.empty() && cn != h.name) hc->set_canonical_name(cn);
    hc->set_tlsa_state(std::string(resolver::to_string(h.tlsa.state)));
    hc->set_tlsa_name(h.tlsa.qname);
    hc->set_tlsa_why(h.tlsa.why);
    for (const auto& t : h.tlsa.records) {
      auto* tr = hc->add_tlsa();
      tr->set_usage(t.record.usage);
      tr->set_selector(t.record.selector);
      tr->set_matching_type(t.record.mtype);
      tr->set_data(hex(t.record.data));
      tr->set_usability(std::string(policy::to_string(t.usability)));
    }
    hc->set_dane(std::string(resolver::to_string(h.dane())));

    // Addresses.
    const std::string addrs = h.addresses().empty() ? "no address" : join(h.addresses());
    const std::string via = hc->canonical_name().empty() ? "" : " (via CNAME " + hc->canonical_name() + ")";
    switch (h.address_security) {
      case Security::kSecure:
        add(r, kOk, "dns", h.name, h.name + ": " + addrs + via + ", DNSSEC secure");
        break;
      case Security::kInsecure:
        add(r, kInfo, "dns", h.name,
            h.name + ": " + addrs + via + ", DNSSEC insecure: DANE does not apply to this host");
        break;
      default:
        add(r, kFail, "dns", h.name,
            h.name + ": address lookup " + sec(h.address_security) +
                (h.address_why.empty() ? "" : " (" + h.address_why + ")") + ": the host is not used");
        break;
    }
    // TLSA.
    const std::string at = h.tlsa.qname.empty() ? "" : " at " + h.tlsa.qname;
    Finding* f = nullptr;
    size_t usable = 0;
    for (const auto& t : h.tlsa.records) usable += t.usability == policy::TlsaUsability::kUsable;
    switch (h.tlsa.state) {
      case resolver::TlsaState::kUsable:
        f = add(r, kOk, "dns", h.name,
                h.name + ": TLSA" + at + " secure, " + std::to_string(usable) + " of " +
                    std::to_string(h.tlsa.records.size()) + " usable: DANE authenticates this host");
        break;
      case resolver::TlsaState::kAllUnusable:
        f = add(r, kWarn, "dns", h.name,
                h.name + ": TLSA" + at + " secure but none usable: TLS required, not authenticated (RFC 7672 §2.2)");
        break;
      case resolver::TlsaState::kSecureDenial:
        add(r, kInfo, "dns", h.name, h.name + ": no TLSA" + at + " (DNSSEC-secure denial): no DANE for this host");
        break;
      case resolver::TlsaState::kInsecure:
        add(r, kInfo, "dns", h.name, h.name + ": TLSA" + at + " insecure: no DANE for this host");
        break;
      case resolver::TlsaState::kNotLooked:
        if (h.address_security == Security::kInsecure)
          add(r, kInfo, "dns", h.name, h.name + ": TLSA not looked up (addresses not DNSSEC-secure)");
        break;
      case resolver::TlsaState::kBogus:
      case resolver::TlsaState::kFailure:
        add(r, kFail, "dns", h.name,
            h.name + ": TLSA" + at + " " + std::string(resolver::to_string(h.tlsa.state)) +
                (h.tlsa.why.empty() ? "" : " (" + h.tlsa.why + ")") +
                ": DANE cannot be decided, the host is not used (unless DANE mode none)");
        break;
    }
    if (f != nullptr) {
      for (const auto& t : h.tlsa.records)
        f->add_details(policy::to_presentation(t.record) +
                       (t.usability == policy::TlsaUsability::kUsable
                            ? ""
                            : "  (" + std::string(policy::to_string(t.usability)) + ")"));
    }
  }
}

// ---- MTA-STS --------------------------------------------------------------------------------------

void report_sts(const std::string& domain, const resolver::Resolver::Result& txt,
                const std::optional<mta_sts::StsResult>& sts, CheckReport& r) {
  auto* m = r.mutable_mta_sts();
  m->set_txt_name("_mta-sts." + domain);
  m->set_policy_url("https://mta-sts." + domain + "/.well-known/mta-sts.txt");
  if (txt) {
    m->set_txt_dnssec(sec(txt->security));
    for (const auto& t : txt->answer.txt) m->add_txt_records(t);
    if (txt->security == Security::kBogus || txt->security == Security::kFailure) {
      add(r, kFail, "mta-sts", m->txt_name(),
          "TXT " + m->txt_name() + ": " + sec(txt->security) + (txt->why.empty() ? "" : " (" + txt->why + ")"));
    } else if (txt->answer.txt.empty()) {
      add(r, kInfo, "mta-sts", m->txt_name(), "TXT " + m->txt_name() + ": none (DNSSEC " + sec(txt->security) + ")");
    } else {
      Finding* f = add(r, kOk, "mta-sts", m->txt_name(),
                       "TXT " + m->txt_name() + ": " + std::to_string(txt->answer.txt.size()) + " record(s), DNSSEC " +
                           sec(txt->security));
      for (const auto& t : txt->answer.txt) f->add_details("\"" + t + "\"");
    }
  }
  if (!sts) {
    m->set_result("temporary-failure");
    m->set_reason("no MTA-STS result before the deadline");
    add(r, kFail, "mta-sts", domain, "MTA-STS: no result before the deadline");
    return;
  }
  m->set_result(std::string(mta_sts::to_string(sts->kind)));
  m->set_id(sts->id);
  m->set_reason(sts->reason);
  switch (sts->kind) {
    case mta_sts::StsResult::kPolicy: {
      m->set_mode(std::string(policy::to_string(sts->policy.mode)));
      m->set_max_age(sts->policy.max_age);
      for (const auto& p : sts->policy.mx) m->add_mx(p);
      const auto sev = sts->policy.mode == policy::StsMode::kEnforce   ? kOk
                       : sts->policy.mode == policy::StsMode::kTesting ? kWarn
                                                                       : kInfo;
      Finding* f = add(
          r, sev, "mta-sts", domain,
          "MTA-STS policy id " + sts->id + ": mode " + m->mode() + ", max_age " + std::to_string(sts->policy.max_age) +
              (sts->policy.mode == policy::StsMode::kTesting ? " (testing: failures are only reported)" : ""));
      f->add_details(m->policy_url());
      for (const auto& p : sts->policy.mx) f->add_details("mx: " + p);
      break;
    }
    case mta_sts::StsResult::kNoPolicy:
      add(r, kInfo, "mta-sts", domain, "MTA-STS: no policy (" + sts->reason + ")");
      break;
    case mta_sts::StsResult::kTempFail:
      add(r, kFail, "mta-sts", domain, "MTA-STS: the policy could not be obtained: " + sts->reason);
      break;
  }
}

const policy::StsPolicy* active_policy(const std::optional<mta_sts::StsResult>& sts) {
  if (!sts || sts->kind != mta_sts::StsResult::kPolicy || sts->policy.mode == policy::StsMode::kNone) return nullptr;
  return &sts->policy;
}

// ---- probes ---------------------------------------------------------------------------------------

// The TLS set-up each host is probed with: the policy compiler's own host policy under DANE
// opportunistic (kDane with the usable TLSA set and DANE names where DANE applies), so the DANE
// match is the one delivery makes; hosts that policy leaves out (a bogus TLSA answer) are probed
// without DANE. Hosts whose addresses are bogus or failed are never probed (they may be forged).
std::vector<policy::HostPolicy> probe_targets(const DestinationResult& d, const v1::Connector& base, int64_t now) {
  v1::Connector c = base;
  c.clear_smart_host();
  c.set_dane_mode(v1::CONNECTOR_MODE_OPPORTUNISTIC);
  c.set_mta_sts_mode(v1::CONNECTOR_MODE_NONE);
  c.set_min_tls_version("TLSv1.2");
  c.set_allow_cleartext(true);
  const policy::DestinationPolicy p = policy_compiler::compile(c, d.domain, d, policy_compiler::StsInput{}, now);
  std::vector<policy::HostPolicy> out;
  for (const MxHost& h : d.hosts) {
    if (h.address_security == Security::kBogus || h.address_security == Security::kFailure || h.addresses().empty())
      continue;
    auto it =
        std::find_if(p.hosts.begin(), p.hosts.end(), [&](const policy::HostPolicy& hp) { return hp.name == h.name; });
    if (it != p.hosts.end()) {
      out.push_back(*it);
      out.back().min_tls_version = 0x0303;
      continue;
    }
    policy::HostPolicy hp;
    hp.name = h.name;
    hp.preference = h.preference;
    hp.addresses = h.addresses();
    hp.tls = policy::TlsRequirement::kMay;
    out.push_back(std::move(hp));
  }
  return out;
}

void report_probe(const mgmt::v1::Probe& p, const policy::HostPolicy& hp, const policy::StsPolicy* sts,
                  CheckReport& r) {
  const std::string subject = target(p.host(), p.address(), p.port());
  if (!p.connected()) {
    add(r, kFail, "probe", subject, "connect: " + p.error());
    return;
  }
  add(r, kOk, "probe", subject, "connected");
  if (p.banner().empty()) {
    add(r, kFail, "probe", subject, "greeting: " + p.error());
    return;
  }
  add(r, p.banner().starts_with("220") ? kOk : kFail, "probe", subject, "greeting: " + p.banner());
  if (!p.ehlo_ok()) {
    add(r, kFail, "probe", subject, p.error());
    return;
  }
  add(r, kOk, "probe", subject,
      "EHLO " + r.ehlo_name() + ": " +
          join(std::vector<std::string>(p.ehlo_keywords().begin(), p.ehlo_keywords().end()), " "));
  const bool listed = sts != nullptr && policy::sts_policy_allows(*sts, p.host());
  const bool sts_enforce = listed && sts->mode == policy::StsMode::kEnforce;
  if (!p.starttls_offered()) {
    const bool needed = hp.tls == policy::TlsRequirement::kDane || sts_enforce;
    add(r, needed ? kFail : kWarn, "probe", subject,
        std::string("STARTTLS not offered") + (needed
                                                   ? ": DANE / MTA-STS require TLS, delivery defers"
                                                   : ": only cleartext delivery is possible (a stripping middlebox?)"));
    return;
  }
  if (!p.tls()) {
    add(r, kFail, "probe", subject, "STARTTLS offered, but " + p.error());
    return;
  }
  Finding* f = add(r, kOk, "probe", subject, "STARTTLS: " + p.tls_version() + " " + p.cipher());
  for (const auto& c : p.chain()) {
    f->add_details(std::to_string(c.depth()) + " subject " + c.subject());
    f->add_details("  issuer  " + c.issuer());
    if (c.dns_names_size() > 0)
      f->add_details("  names   " + join(std::vector<std::string>(c.dns_names().begin(), c.dns_names().end())));
    f->add_details("  valid   " + c.not_before() + " .. " + c.not_after());
    f->add_details("  spki    sha256 " + c.spki_sha256());
  }
  if (p.dane() == "verified")
    add(r, kOk, "probe", subject, "DANE: verified, " + p.dane_detail());
  else if (p.dane() == "failed")
    add(r, kFail, "probe", subject,
        "DANE: " + p.dane_detail() + (p.dane_result_type().empty() ? "" : " (" + p.dane_result_type() + ")"));
  else
    add(r, kInfo, "probe", subject, "DANE: not applicable (no usable TLSA records)");
  const std::string webpki = p.webpki() == "verified"
                                 ? "WebPKI: certificate valid for " + p.host()
                                 : "WebPKI: " + p.webpki_detail() + " (" + p.webpki_result_type() + ")";
  if (p.mta_sts() == "match")
    add(r, kOk, "probe", subject, "MTA-STS: match (" + webpki + ")");
  else if (p.mta_sts() == "mismatch")
    add(r, sts_enforce ? kFail : kWarn, "probe", subject,
        "MTA-STS: mismatch, " + webpki + (sts_enforce ? "" : " (testing: reported only)"));
  else if (p.mta_sts() == "not-listed")
    add(r, kWarn, "probe", subject, "MTA-STS: host not listed in the policy; " + webpki);
  else
    add(r, p.webpki() == "verified" ? kOk : kInfo, "probe", subject, webpki + " (no MTA-STS policy requires it)");
  if (!p.error().empty()) add(r, kWarn, "probe", subject, p.error());
}

void set_probe_sts(const policy::StsPolicy* sts, mgmt::v1::Probe& p) {
  if (!p.tls())
    p.set_mta_sts(sts == nullptr ? "no-policy" : "not-tested");
  else if (sts == nullptr)
    p.set_mta_sts("no-policy");
  else if (!policy::sts_policy_allows(*sts, p.host()))
    p.set_mta_sts("not-listed");
  else
    p.set_mta_sts(p.webpki() == "verified" ? "match" : "mismatch");
}

std::string modes_text(const mgmt::v1::ModeVerdict& v) {
  return "DANE " + v.dane_mode() + ", MTA-STS " + v.mta_sts_mode() +
         (v.allow_cleartext() ? ", cleartext allowed" : ", no cleartext");
}

std::string address_literal_host(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1 ? text
                                                                                                   : std::string();
}

}  // namespace

CheckSettings check_settings(const config::v1::Config& cfg) {
  v1::Config c = cfg;
  config::apply_defaults(c);
  CheckSettings s;
  s.resolver = resolver::resolver_options(c.resolver());
  s.destination = resolver::destination_options(c.resolver());
  s.fetch = mta_sts::fetch_options(c.mta_sts());
  s.webpki_ca_file = c.outbound().ca_file();
  s.probe.ehlo_name = c.hostname();
  s.probe.connect_timeout =
      std::min(config::to_milliseconds(c.outbound().connect_timeout()), std::chrono::milliseconds(10000));
  s.probe.command_timeout =
      std::min(config::to_milliseconds(c.outbound().command_timeout()), std::chrono::milliseconds(30000));
  if (s.probe.connect_timeout.count() <= 0) s.probe.connect_timeout = std::chrono::milliseconds(10000);
  if (s.probe.command_timeout.count() <= 0) s.probe.command_timeout = std::chrono::milliseconds(30000);
  return s;
}

CheckReport run_check(const config::v1::Config& cfg, const mgmt::v1::CheckRequest& request) {
  return run_check(cfg, request, check_settings(cfg));
}

CheckReport run_check(const config::v1::Config& cfg, const mgmt::v1::CheckRequest& request,
                      const CheckSettings& settings) {
  const auto start = Clock::now();
  CheckReport r;
  const std::string domain = resolver::normalize_name(request.domain());
  r.set_domain(domain);
  r.set_checked_at(static_cast<int64_t>(::time(nullptr)));
  r.set_ehlo_name(settings.probe.ehlo_name);
  auto elapsed = [&] { return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count(); };
  auto fail = [&](std::string error) {
    add(r, kFail, "dns", domain, error);
    r.set_error(std::move(error));
    r.mutable_configured()->set_outcome("defer");
    r.mutable_configured()->set_reason(r.error());
    r.set_elapsed_ms(elapsed());
    return r;
  };
  if (domain.empty() || domain == "." || domain.find_first_of(" /\\@") != std::string::npos)
    return fail("not a domain name: '" + request.domain() + "'");

  const v1::Connector& configured = config::select_connector(cfg, domain);
  std::string smart_name;
  uint16_t smart_port = 25;
  if (!configured.smart_host().empty() &&
      !push::PolicyTable::parse_smart_host(configured.smart_host(), &smart_name, &smart_port))
    smart_name.clear();

  // 1-2. DNS and MTA-STS, in parallel on the resolver's event base, with an overall deadline.
  std::string error;
  auto res = resolver::Resolver::create(settings.resolver, &error);
  if (!res) return fail("resolver: " + error);
  auto g = std::make_shared<Gathered>();
  {
    resolver::DestinationResolver destinations(*res, settings.destination);
    mta_sts::PolicyFetcher fetcher(*res, settings.fetch);
    mta_sts::StsClient sts(*res, fetcher);
    destinations.resolve(domain, [g](const resolver::DestinationResolver::Result& d, bool) { g->dest = d; });
    res->lookup("_mta-sts." + domain, resolver::kTypeTxt,
                [g](const resolver::Resolver::Result& t, bool) { g->txt = t; });
    sts.lookup(domain, [g](const mta_sts::StsResult& s) { g->sts = s; });
    if (!smart_name.empty()) {
      g->want_smart = true;
      if (!address_literal_host(smart_name).empty()) {
        // An address: nothing to resolve and no DANE (as the policy table does it).
        auto d = std::make_shared<DestinationResult>();
        d->domain = domain;
        d->mx_state = resolver::MxState::kNoMx;
        d->mx_security = Security::kSecure;
        MxHost h;
        h.name = smart_name;
        h.address_security = Security::kInsecure;
        resolver::AddressAnswer& a = smart_name.find(':') == std::string::npos ? h.a : h.aaaa;
        a.security = Security::kInsecure;
        a.kind = resolver::AnswerKind::kData;
        a.addresses.push_back(smart_name);
        d->hosts.push_back(std::move(h));
        g->smart = d;
      } else {
        destinations.resolve_host(smart_name, smart_port,
                                  [g](const resolver::DestinationResolver::Result& d, bool) { g->smart = d; });
      }
    }
    bool timed_out = false;
    struct event* deadline = evtimer_new(
        res->event_base(), [](evutil_socket_t, short, void* arg) { *static_cast<bool*>(arg) = true; }, &timed_out);
    const timeval tv{static_cast<time_t>(settings.resolve_deadline.count() / 1000),
                     static_cast<suseconds_t>((settings.resolve_deadline.count() % 1000) * 1000)};
    if (deadline != nullptr) evtimer_add(deadline, &tv);
    fetcher.run_until([&] { return timed_out || g->done(); });
    if (deadline != nullptr) event_free(deadline);
  }
  if (!g->dest)
    return fail("DNS: no answer for " + domain + " within " + std::to_string(settings.resolve_deadline.count()) +
                " ms");

  const DestinationResult& dest = *g->dest;
  report_dns(dest, r);
  report_sts(domain, g->txt, g->sts, r);
  const policy::StsPolicy* sts_policy = active_policy(g->sts);
  for (auto& h : *r.mutable_hosts()) {
    if (sts_policy != nullptr)
      h.set_mta_sts(policy::sts_policy_allows(*sts_policy, h.name()) ? "listed" : "not-listed");
  }
  if (sts_policy != nullptr && sts_policy->mode == policy::StsMode::kEnforce) {
    for (const MxHost& h : dest.hosts)
      if (!policy::sts_policy_allows(*sts_policy, h.name))
        add(r, kWarn, "mta-sts", h.name,
            h.name +
                " is not listed in the MTA-STS policy: delivery under MTA-STS skips it (unless DANE authenticates it)");
  }
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  const int64_t sts_expires = g->sts && g->sts->kind == mta_sts::StsResult::kPolicy ? now + g->sts->policy.max_age : 0;

  // 3. Probes.
  std::map<std::string, mgmt::v1::Probe> probes;  // "host|address|port"
  auto key = [](std::string_view host, std::string_view address, uint32_t port) {
    return std::string(host) + "|" + std::string(address) + "|" + std::to_string(port);
  };
  std::vector<policy::HostPolicy> targets = probe_targets(dest, configured, now);
  if (g->smart) {
    for (auto hp : probe_targets(*g->smart, configured, now)) {
      hp.port = smart_port;
      targets.push_back(std::move(hp));
    }
  }
  bool probed = false;
  if (request.no_probe()) {
    add(r, kInfo, "probe", domain, "not probed (no_probe): the verdicts rest on DNS and MTA-STS alone");
  } else if (targets.empty()) {
    add(r, kInfo, "probe", domain, "nothing to probe: no MX host with usable addresses");
  } else {
    tls::OutboundTlsOptions topt;
    topt.ca_file = settings.webpki_ca_file;
    topt.max_cached_sessions = 0;
    auto tls = tls::OutboundTls::create(topt, &error);
    if (!tls) {
      add(r, kFail, "probe", domain, "TLS client set-up: " + error);
    } else {
      probed = true;
      for (const policy::HostPolicy& hp : targets) {
        for (const std::string& a : hp.addresses) {
          const std::string k = key(hp.name, a, hp.port);
          if (probes.count(k) != 0) continue;
          mgmt::v1::Probe p = probe_address(hp, a, *tls, settings.probe);
          set_probe_sts(hp.port == 25 ? sts_policy : nullptr, p);
          report_probe(p, hp, hp.port == 25 ? sts_policy : nullptr, r);
          probes[k] = p;
          *r.add_probes() = std::move(p);
        }
      }
    }
  }
  r.set_probed(probed);

  // 4. Verdicts.
  const mta_sts::StsResult* sts_result = g->sts ? &*g->sts : nullptr;
  auto lookup_port = [&](uint32_t port) -> ProbeLookup {
    return [&, port](std::string_view host, std::string_view address) -> const mgmt::v1::Probe* {
      auto it = probes.find(key(host, address, port));
      return it == probes.end() ? nullptr : &it->second;
    };
  };
  static constexpr v1::ConnectorMode kModes[] = {v1::CONNECTOR_MODE_NONE, v1::CONNECTOR_MODE_OPPORTUNISTIC,
                                                 v1::CONNECTOR_MODE_MANDATORY};
  for (auto dane : kModes) {
    for (auto sts : kModes) {
      v1::Connector c = configured;
      c.clear_smart_host();
      c.set_dane_mode(dane);
      c.set_mta_sts_mode(sts);
      auto p = policy_compiler::compile(c, domain, dest, policy_compiler::StsInput{sts_result, sts_expires}, now);
      mgmt::v1::ModeVerdict v = judge(p, lookup_port(25), probed);
      v.clear_connector();
      v.set_allow_cleartext(c.allow_cleartext());
      *r.add_modes() = std::move(v);
    }
  }
  mgmt::v1::ModeVerdict cv;
  if (!configured.smart_host().empty()) {
    if (smart_name.empty() || !g->smart) {
      cv.set_policy("defer");
      cv.set_outcome("defer");
      cv.set_reason(smart_name.empty() ? "invalid smart_host '" + configured.smart_host() + "'"
                                       : "no DNS answer for the smart host in time");
    } else {
      auto p = policy_compiler::compile(configured, domain, *g->smart, policy_compiler::StsInput{}, now);
      for (auto& h : p.hosts) h.port = smart_port;
      cv = judge(p, lookup_port(smart_port), probed);
    }
  } else {
    auto p =
        policy_compiler::compile(configured, domain, dest, policy_compiler::StsInput{sts_result, sts_expires}, now);
    cv = judge(p, lookup_port(25), probed);
  }
  cv.set_connector(configured.name());
  cv.set_dane_mode(std::string(policy::to_string(policy_compiler::mode_of(configured.dane_mode()))));
  cv.set_mta_sts_mode(std::string(policy::to_string(policy_compiler::mode_of(configured.mta_sts_mode()))));
  cv.set_allow_cleartext(configured.allow_cleartext());
  const std::string who = "connector '" + configured.name() + "' (" + modes_text(cv) +
                          (configured.smart_host().empty() ? "" : ", smart host " + configured.smart_host()) + ")";
  if (cv.outcome() == "deliver") {
    add(r, cv.probed() ? kOk : kInfo, "verdict", configured.name(), who + ": deliver: " + cv.reason());
  } else {
    const bool listed = cv.attempts_size() > 0;  // the reason joins them: list them one per line instead
    Finding* f = add(r, kFail, "verdict", configured.name(),
                     who + ": " + cv.outcome() + ": " +
                         (listed ? "no MX host would accept the connection under this policy" : cv.reason()));
    for (const auto& a : cv.attempts()) f->add_details(a);
  }
  *r.mutable_configured() = std::move(cv);
  r.set_elapsed_ms(elapsed());
  return r;
}

bool would_deliver(const CheckReport& report) { return report.configured().outcome() == "deliver"; }

}  // namespace mxedge::analyzer
