#include "policy/policy_codec.h"

#include <arpa/inet.h>

namespace mxedge::policy {
namespace {

namespace pb = mxedge::policy::v1;

pb::ConnectorMode mode_to(ConnectorMode m) {
  switch (m) {
    case ConnectorMode::kNone: return pb::CONNECTOR_MODE_NONE;
    case ConnectorMode::kOpportunistic: return pb::CONNECTOR_MODE_OPPORTUNISTIC;
    case ConnectorMode::kMandatory: return pb::CONNECTOR_MODE_MANDATORY;
  }
  return pb::CONNECTOR_MODE_UNSPECIFIED;
}

std::optional<ConnectorMode> mode_from(int m) {
  switch (m) {
    case pb::CONNECTOR_MODE_NONE: return ConnectorMode::kNone;
    case pb::CONNECTOR_MODE_OPPORTUNISTIC: return ConnectorMode::kOpportunistic;
    case pb::CONNECTOR_MODE_MANDATORY: return ConnectorMode::kMandatory;
    default: return std::nullopt;
  }
}

pb::TlsRequirement tls_to(TlsRequirement t) {
  switch (t) {
    case TlsRequirement::kMay: return pb::TLS_REQUIREMENT_MAY;
    case TlsRequirement::kEncrypt: return pb::TLS_REQUIREMENT_ENCRYPT;
    case TlsRequirement::kDane: return pb::TLS_REQUIREMENT_DANE;
    case TlsRequirement::kWebPki: return pb::TLS_REQUIREMENT_WEBPKI;
  }
  return pb::TLS_REQUIREMENT_UNSPECIFIED;
}

std::optional<TlsRequirement> tls_from(int t) {
  switch (t) {
    case pb::TLS_REQUIREMENT_MAY: return TlsRequirement::kMay;
    case pb::TLS_REQUIREMENT_ENCRYPT: return TlsRequirement::kEncrypt;
    case pb::TLS_REQUIREMENT_DANE: return TlsRequirement::kDane;
    case pb::TLS_REQUIREMENT_WEBPKI: return TlsRequirement::kWebPki;
    default: return std::nullopt;
  }
}

pb::Verdict verdict_to(PolicyVerdict v) {
  switch (v) {
    case PolicyVerdict::kDeliver: return pb::VERDICT_DELIVER;
    case PolicyVerdict::kDefer: return pb::VERDICT_DEFER;
    case PolicyVerdict::kBounce: return pb::VERDICT_BOUNCE;
  }
  return pb::VERDICT_UNSPECIFIED;
}

std::optional<PolicyVerdict> verdict_from(int v) {
  switch (v) {
    case pb::VERDICT_DELIVER: return PolicyVerdict::kDeliver;
    case pb::VERDICT_DEFER: return PolicyVerdict::kDefer;
    case pb::VERDICT_BOUNCE: return PolicyVerdict::kBounce;
    default: return std::nullopt;
  }
}

// A host or domain name as the compiler writes it: 1-253 octets, lower-case LDH labels (and "_").
bool plausible_name(const std::string& n) {
  if (n.empty() || n.size() > 253 || n.front() == '.' || n.back() == '.') return false;
  size_t label = 0;
  for (char c : n) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
      if (++label > 63) return false;
    } else {
      return false;
    }
  }
  return true;
}

bool ip_literal(const std::string& a) {
  unsigned char buf[16];
  return inet_pton(AF_INET, a.c_str(), buf) == 1 || inet_pton(AF_INET6, a.c_str(), buf) == 1;
}

constexpr size_t kMaxText = 4096;
constexpr size_t kMaxTlsaData = 16384;
constexpr int kMaxHosts = 100;
constexpr int kMaxList = 256;

}  // namespace

void to_proto(const DestinationPolicy& p, pb::DestinationPolicy* out) {
  out->Clear();
  out->set_domain(p.domain);
  out->set_connector(p.connector);
  out->set_dane_mode(mode_to(p.dane_mode));
  out->set_mta_sts_mode(mode_to(p.sts_mode));
  out->set_verdict(verdict_to(p.verdict));
  out->set_reason(p.reason);
  out->set_result_type(p.result_type);
  out->set_enhanced_status(p.enhanced_status);
  for (const HostPolicy& h : p.hosts) {
    pb::HostPolicy* o = out->add_hosts();
    o->set_name(h.name);
    o->set_preference(h.preference);
    for (const auto& a : h.addresses) o->add_addresses(a);
    o->set_tls(tls_to(h.tls));
    for (const auto& r : h.tlsa) {
      pb::TlsaRecord* t = o->add_tlsa();
      t->set_usage(r.usage);
      t->set_selector(r.selector);
      t->set_matching_type(r.mtype);
      t->set_data(std::string(r.data.begin(), r.data.end()));
    }
    for (const auto& n : h.dane_names) o->add_dane_names(n);
    o->set_sts_testing(h.sts_testing);
    o->set_cleartext_allowed(h.cleartext_allowed);
    o->set_min_tls_version(h.min_tls_version);
    o->set_reason(h.reason);
    o->set_port(h.port == 25 ? 0 : h.port);
  }
  for (const auto& e : p.excluded) {
    pb::ExcludedHost* o = out->add_excluded();
    o->set_name(e.name);
    o->set_reason(e.reason);
    o->set_result_type(e.result_type);
  }
  out->set_dnssec(p.dnssec);
  out->set_mta_sts(p.sts);
  out->set_mta_sts_id(p.sts_id);
  for (const auto& m : p.sts_mx) out->add_mta_sts_mx(m);
  out->set_expires_at(p.expires_at);
  out->set_version(p.version);
}

std::optional<DestinationPolicy> from_proto(const pb::DestinationPolicy& m, std::string* error) {
  auto fail = [&](std::string what) -> std::optional<DestinationPolicy> {
    *error = (m.domain().empty() || m.domain().size() > 253 ? std::string("policy") : "policy for " + m.domain()) + ": " + what;
    return std::nullopt;
  };
  DestinationPolicy p;
  if (!plausible_name(m.domain())) return fail("invalid domain");
  p.domain = m.domain();
  auto dm = mode_from(m.dane_mode());
  auto sm = mode_from(m.mta_sts_mode());
  auto v = verdict_from(m.verdict());
  if (!dm) return fail("dane_mode " + std::to_string(m.dane_mode()) + " unknown");
  if (!sm) return fail("mta_sts_mode " + std::to_string(m.mta_sts_mode()) + " unknown");
  if (!v) return fail("verdict " + std::to_string(m.verdict()) + " unknown");
  p.dane_mode = *dm;
  p.sts_mode = *sm;
  p.verdict = *v;
  for (const std::string* s : {&m.connector(), &m.reason(), &m.result_type(), &m.enhanced_status(), &m.dnssec(), &m.mta_sts(), &m.mta_sts_id()})
    if (s->size() > kMaxText) return fail("a text field is longer than " + std::to_string(kMaxText) + " octets");
  p.connector = m.connector();
  p.reason = m.reason();
  p.result_type = m.result_type();
  p.enhanced_status = m.enhanced_status();
  p.dnssec = m.dnssec();
  p.sts = m.mta_sts();
  p.sts_id = m.mta_sts_id();
  if (m.hosts_size() > kMaxHosts || m.excluded_size() > kMaxHosts || m.mta_sts_mx_size() > kMaxList)
    return fail("too many hosts or patterns");
  if (p.verdict == PolicyVerdict::kDeliver && m.hosts_size() == 0) return fail("verdict deliver without hosts");
  if (p.verdict != PolicyVerdict::kDeliver && m.hosts_size() != 0) return fail("hosts given with verdict " + std::string(to_string(p.verdict)));
  for (int i = 0; i < m.hosts_size(); ++i) {
    const pb::HostPolicy& h = m.hosts(i);
    const std::string at = "hosts[" + std::to_string(i) + "]";
    HostPolicy hp;
    if (!plausible_name(h.name())) return fail(at + ": invalid host name");
    hp.name = h.name();
    if (h.preference() > 65535) return fail(at + ": preference out of range");
    hp.preference = static_cast<uint16_t>(h.preference());
    if (h.addresses_size() == 0 || h.addresses_size() > kMaxList) return fail(at + ": needs 1 to 256 addresses");
    for (const auto& a : h.addresses()) {
      if (!ip_literal(a)) return fail(at + ": '" + a.substr(0, 64) + "' is not an IP address");
      hp.addresses.push_back(a);
    }
    auto t = tls_from(h.tls());
    if (!t) return fail(at + ": tls requirement " + std::to_string(h.tls()) + " unknown");
    hp.tls = *t;
    if (h.tlsa_size() > kMaxList || h.dane_names_size() > 8) return fail(at + ": too many TLSA records or names");
    for (int j = 0; j < h.tlsa_size(); ++j) {
      const pb::TlsaRecord& r = h.tlsa(j);
      const std::string rat = at + ".tlsa[" + std::to_string(j) + "]";
      if (r.usage() > 255 || r.selector() > 255 || r.matching_type() > 255) return fail(rat + ": field out of range");
      if (r.data().empty() || r.data().size() > kMaxTlsaData) return fail(rat + ": association data must be 1 to 16384 octets");
      TlsaRecord rec{static_cast<uint8_t>(r.usage()), static_cast<uint8_t>(r.selector()), static_cast<uint8_t>(r.matching_type()),
                     std::vector<uint8_t>(r.data().begin(), r.data().end())};
      if (classify(rec) != TlsaUsability::kUsable) return fail(rat + ": not usable (" + std::string(to_string(classify(rec))) + ")");
      hp.tlsa.push_back(std::move(rec));
    }
    for (const auto& n : h.dane_names()) {
      if (!plausible_name(n)) return fail(at + ": invalid DANE name");
      hp.dane_names.push_back(n);
    }
    if (hp.tls == TlsRequirement::kDane && (hp.tlsa.empty() || hp.dane_names.empty()))
      return fail(at + ": DANE requirement without TLSA records or names");
    if (hp.tls != TlsRequirement::kDane && !hp.tlsa.empty()) return fail(at + ": TLSA records without a DANE requirement");
    if (h.min_tls_version() != 0x0303 && h.min_tls_version() != 0x0304) return fail(at + ": min_tls_version must be TLS 1.2 or 1.3");
    hp.min_tls_version = static_cast<uint16_t>(h.min_tls_version());
    if (h.cleartext_allowed() && hp.tls != TlsRequirement::kMay) return fail(at + ": cleartext allowed with a TLS requirement");
    hp.cleartext_allowed = h.cleartext_allowed();
    hp.sts_testing = h.sts_testing();
    if (h.reason().size() > kMaxText) return fail(at + ": reason too long");
    if (h.port() > 65535) return fail(at + ": port out of range");
    hp.port = h.port() == 0 ? 25 : static_cast<uint16_t>(h.port());
    hp.reason = h.reason();
    p.hosts.push_back(std::move(hp));
  }
  for (const auto& e : m.excluded()) {
    if (e.name().size() > 253 || e.reason().size() > kMaxText || e.result_type().size() > 64) return fail("excluded host fields too long");
    p.excluded.push_back({e.name(), e.reason(), e.result_type()});
  }
  for (const auto& x : m.mta_sts_mx()) {
    if (x.size() > 255) return fail("mta_sts_mx pattern too long");
    p.sts_mx.push_back(x);
  }
  if (m.expires_at() <= 0) return fail("no expiry");
  p.expires_at = m.expires_at();
  p.version = m.version();
  return p;
}

}  // namespace mxedge::policy
