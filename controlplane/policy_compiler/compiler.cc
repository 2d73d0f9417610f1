#include "controlplane/policy_compiler/compiler.h"

#include <algorithm>
#include <string>

namespace mxedge::policy_compiler {
namespace {

using policy::ConnectorMode;
using policy::DestinationPolicy;
using policy::HostPolicy;
using policy::PolicyVerdict;
using policy::TlsRequirement;
using resolver::DaneState;
using resolver::MxHost;
using resolver::MxState;
using resolver::Security;
using resolver::TlsaState;

// "_25._tcp.mx.example.com" → "mx.example.com".
std::string tlsa_base(const std::string& qname, const std::string& fallback) {
  const size_t tcp = qname.find("._tcp.");
  if (qname.empty() || qname.front() != '_' || tcp == std::string::npos) return fallback;
  return qname.substr(tcp + 6);
}

void defer(DestinationPolicy& p, std::string reason, std::string result_type, std::string status) {
  p.verdict = PolicyVerdict::kDefer;
  p.reason = std::move(reason);
  p.result_type = std::move(result_type);
  p.enhanced_status = std::move(status);
  p.hosts.clear();
}

void bounce(DestinationPolicy& p, std::string reason, std::string status) {
  p.verdict = PolicyVerdict::kBounce;
  p.reason = std::move(reason);
  p.enhanced_status = std::move(status);
  p.hosts.clear();
}

uint16_t tls_version(const std::string& name) { return name == "TLSv1.3" ? 0x0304 : 0x0303; }

std::string tlsa_summary(const MxHost& h) {
  std::string s = std::string(resolver::to_string(h.tlsa.state));
  if (!h.tlsa.qname.empty()) s += " at " + h.tlsa.qname;
  if (!h.tlsa.why.empty()) s += " (" + h.tlsa.why + ")";
  return s;
}

}  // namespace

policy::ConnectorMode mode_of(config::v1::ConnectorMode m) {
  switch (m) {
    case config::v1::CONNECTOR_MODE_NONE: return ConnectorMode::kNone;
    case config::v1::CONNECTOR_MODE_MANDATORY: return ConnectorMode::kMandatory;
    default: return ConnectorMode::kOpportunistic;
  }
}

DestinationPolicy compile(const config::v1::Connector& connector, std::string_view domain,
                          const resolver::DestinationResult& dest, const StsInput& sts_in, int64_t now) {
  DestinationPolicy p;
  p.domain = std::string(domain);
  p.connector = connector.name();
  p.dane_mode = mode_of(connector.dane_mode());
  p.sts_mode = mode_of(connector.mta_sts_mode());
  p.dnssec = std::string(resolver::to_string(dest.mx_security));
  // A policy lives no longer than the DNS data it was made from. ttl 0 is data that expires now (a
  // recompilation at expiry can meet records in their last milliseconds): the policy table gives such
  // a policy one second, after which it is made again from fresh answers. It used to get 60 s here,
  // which kept DANE and MX data a minute past its TTL (seen with DNS down: a policy outlived its data).
  p.expires_at = now + dest.ttl;

  // What MTA-STS says (RFC 8461).
  const mta_sts::StsResult* sts = p.sts_mode == ConnectorMode::kNone ? nullptr : sts_in.result;
  const policy::StsPolicy* sts_policy = nullptr;
  if (sts == nullptr) {
    p.sts = p.sts_mode == ConnectorMode::kNone ? "ignored" : "not-looked-up";
  } else if (sts->kind == mta_sts::StsResult::kPolicy) {
    p.sts = std::string(policy::to_string(sts->policy.mode));
    p.sts_id = sts->id;
    p.sts_mx = sts->policy.mx;
    if (sts->policy.mode != policy::StsMode::kNone) sts_policy = &sts->policy;
    if (sts_in.expires_at > 0) p.expires_at = std::min(p.expires_at, sts_in.expires_at);
  } else {
    p.sts = std::string(mta_sts::to_string(sts->kind));
  }
  const bool sts_enforce = sts_policy != nullptr && sts_policy->mode == policy::StsMode::kEnforce;
  const bool sts_testing = sts_policy != nullptr && sts_policy->mode == policy::StsMode::kTesting;

  switch (dest.mx_state) {
    case MxState::kNullMx:
      bounce(p, "the domain accepts no mail: it publishes a null MX (RFC 7505)", "5.1.10");
      return p;
    case MxState::kNxDomain:
      bounce(p, "the domain does not exist (NXDOMAIN" + std::string(dest.mx_security == Security::kSecure ? ", DNSSEC-secure" : "") + ")", "5.1.2");
      return p;
    case MxState::kBogus:
      defer(p, "the MX answer failed DNSSEC validation" + (dest.why.empty() ? "" : ": " + dest.why), "dnssec-invalid", "4.7.5");
      return p;
    case MxState::kFailure:
      defer(p, "the MX lookup failed" + (dest.why.empty() ? "" : ": " + dest.why), "", "4.4.3");
      return p;
    case MxState::kRecords:
    case MxState::kNoMx:
      break;
  }

  if (p.dane_mode == ConnectorMode::kMandatory && dest.mx_security != Security::kSecure) {
    // An insecure MX answer could have been replaced by an attacker's MX pointing at the attacker's
    // own DANE host: the destination itself is not DANE-protected.
    defer(p, "DANE is mandatory for this connector but the domain's MX records are not DNSSEC-secure (" + p.dnssec + ")",
          "dane-required", "4.7.5");
    return p;
  }
  if (p.sts_mode == ConnectorMode::kMandatory && !sts_enforce) {
    std::string why;
    std::string type;
    if (sts == nullptr) why = "no MTA-STS result";
    else if (sts->kind == mta_sts::StsResult::kPolicy) why = "the domain's MTA-STS policy is in mode " + p.sts + ", not enforce";
    else if (sts->kind == mta_sts::StsResult::kNoPolicy) why = "the domain publishes no MTA-STS policy (" + sts->reason + ")";
    else {
      why = "the MTA-STS policy could not be obtained (" + sts->reason + ")";
      type = "sts-policy-fetch-error";
    }
    defer(p, "MTA-STS is mandatory for this connector but " + why, type, "4.7.5");
    return p;
  }

  bool policy_exclusion = false;
  for (const MxHost& h : dest.hosts) {
    auto exclude = [&](std::string reason, std::string type, bool by_policy) {
      p.excluded.push_back({h.name, std::move(reason), std::move(type)});
      policy_exclusion |= by_policy;
    };
    // A bogus or failed address lookup takes the host out whatever the modes: its addresses may be
    // forged, or there are none.
    if (h.address_security == Security::kBogus || h.address_security == Security::kFailure) {
      const bool bogus = h.address_security == Security::kBogus;
      exclude("address lookup " + std::string(resolver::to_string(h.address_security)) +
                  (h.address_why.empty() ? "" : " (" + h.address_why + ")") + ": the host is not used now",
              bogus ? "dnssec-invalid" : "", bogus);
      continue;
    }
    const DaneState dane = p.dane_mode == ConnectorMode::kNone ? DaneState::kNoDane : h.dane();
    if (dane == DaneState::kDefer) {
      const bool bogus = h.tlsa.state == TlsaState::kBogus;
      exclude("TLSA lookup " + tlsa_summary(h) + ": DANE cannot be decided, so the host is not used now",
              bogus ? "dnssec-invalid" : "", bogus);
      continue;
    }
    if (h.addresses().empty()) {
      exclude("no IPv4 or IPv6 address", "", false);
      continue;
    }
    if (p.dane_mode == ConnectorMode::kMandatory && dane != DaneState::kAuthenticate) {
      exclude("DANE is mandatory for this connector but the host has no secure usable TLSA records (TLSA " +
                  tlsa_summary(h) + ", addresses " + std::string(resolver::to_string(h.address_security)) + ")",
              "dane-required", true);
      continue;
    }
    const bool listed = sts_policy == nullptr || policy::sts_policy_allows(*sts_policy, h.name);
    if (sts_enforce && !listed && (dane != DaneState::kAuthenticate || p.sts_mode == ConnectorMode::kMandatory)) {
      exclude("not listed in the MTA-STS policy (mx: " + [&] {
                std::string s;
                for (const auto& m : sts_policy->mx) s += (s.empty() ? "" : ", ") + m;
                return s;
              }() + ")",
              "validation-failure", true);
      continue;
    }

    HostPolicy hp;
    hp.name = h.name;
    hp.preference = h.preference;
    hp.addresses = h.addresses();
    hp.min_tls_version = tls_version(connector.min_tls_version());
    switch (dane) {
      case DaneState::kAuthenticate: {
        hp.tls = TlsRequirement::kDane;
        for (const auto& r : h.tlsa.records)
          if (r.usability == policy::TlsaUsability::kUsable) hp.tlsa.push_back(r.record);
        const std::string base = tlsa_base(h.tlsa.qname, h.name);
        hp.dane_names.push_back(base);
        if (base != h.name) hp.dane_names.push_back(h.name);
        hp.reason = "DANE: " + std::to_string(hp.tlsa.size()) + " usable TLSA record(s) at " + h.tlsa.qname;
        break;
      }
      case DaneState::kEncryptOnly:
        if (sts_enforce) {
          hp.tls = TlsRequirement::kWebPki;
          hp.reason = "TLSA records all unusable (TLS required); MTA-STS enforce: WebPKI certificate for " + h.name;
        } else {
          hp.tls = TlsRequirement::kEncrypt;
          hp.sts_testing = sts_testing && listed;
          hp.reason = "TLSA records at " + h.tlsa.qname + " all unusable: TLS required without authentication (RFC 7672 §2.2)";
        }
        break;
      case DaneState::kNoDane:
      case DaneState::kDefer:
        if (sts_enforce) {
          hp.tls = TlsRequirement::kWebPki;
          hp.reason = "MTA-STS enforce (id " + p.sts_id + "): WebPKI certificate for " + h.name + ", TLS 1.2+";
        } else {
          hp.tls = TlsRequirement::kMay;
          hp.sts_testing = sts_testing && listed;
          hp.cleartext_allowed = connector.allow_cleartext();
          hp.reason = std::string(p.dane_mode == ConnectorMode::kNone ? "DANE not used by this connector" : "no DANE (TLSA " + tlsa_summary(h) + ")") +
                      (sts_testing ? "; MTA-STS testing: verified and reported only" : "; no MTA-STS policy applies") +
                      ": opportunistic TLS" + (hp.cleartext_allowed ? ", cleartext if STARTTLS is not offered" : ", TLS required by the connector");
          if (!hp.cleartext_allowed) hp.tls = TlsRequirement::kEncrypt;
        }
        break;
    }
    p.hosts.push_back(std::move(hp));
  }

  if (p.hosts.empty()) {
    std::string reasons;
    std::string type;
    bool same_type = true;
    for (const auto& e : p.excluded) {
      reasons += (reasons.empty() ? "" : "; ") + e.name + ": " + e.reason;
      if (type.empty()) type = e.result_type;
      else if (e.result_type != type) same_type = false;
    }
    if (reasons.empty()) reasons = "no MX hosts";
    defer(p, "no MX host can be used: " + reasons, same_type ? type : "", policy_exclusion ? "4.7.5" : "4.4.4");
    return p;
  }
  p.verdict = PolicyVerdict::kDeliver;
  return p;
}

}  // namespace mxedge::policy_compiler
