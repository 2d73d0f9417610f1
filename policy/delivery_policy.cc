#include "policy/delivery_policy.h"

namespace mxedge::policy {

std::string_view to_string(ConnectorMode m) {
  switch (m) {
    case ConnectorMode::kNone: return "none";
    case ConnectorMode::kOpportunistic: return "opportunistic";
    case ConnectorMode::kMandatory: return "mandatory";
  }
  return "?";
}

std::string_view to_string(TlsRequirement r) {
  switch (r) {
    case TlsRequirement::kMay: return "may";
    case TlsRequirement::kEncrypt: return "encrypt";
    case TlsRequirement::kDane: return "dane";
    case TlsRequirement::kWebPki: return "webpki";
  }
  return "?";
}

std::string_view to_string(PolicyVerdict v) {
  switch (v) {
    case PolicyVerdict::kDeliver: return "deliver";
    case PolicyVerdict::kDefer: return "defer";
    case PolicyVerdict::kBounce: return "bounce";
  }
  return "?";
}

std::string requiretls_host_refusal(const DestinationPolicy& p, const HostPolicy& h) {
  const bool sts_policy = p.sts == "enforce" || p.sts == "testing";
  bool sts_match = false;
  for (const auto& pattern : p.sts_mx) sts_match = sts_match || sts_mx_matches(pattern, h.name);
  if (p.dnssec != "secure" && !(sts_policy && sts_match)) {
    if (sts_policy) return "MX " + h.name + " not DNSSEC-validated and not covered by the MTA-STS policy";
    return "MX " + h.name + " not DNSSEC-validated (" + (p.dnssec.empty() ? std::string("unknown") : p.dnssec) +
           ") and no MTA-STS policy";
  }
  const bool verifies = h.tls == TlsRequirement::kDane || h.tls == TlsRequirement::kWebPki || h.sts_testing;
  if (!verifies)
    return "no verified TLS possible with " + h.name + " (requirement " + std::string(to_string(h.tls)) +
           ": no usable TLSA, no MTA-STS)";
  return {};
}

std::vector<size_t> requiretls_candidates(const DestinationPolicy& p, const std::map<std::string, std::string>& refused,
                                          std::string* why) {
  std::vector<size_t> out;
  std::string reasons;
  for (size_t i = 0; i < p.hosts.size(); ++i) {
    const HostPolicy& h = p.hosts[i];
    std::string r = requiretls_host_refusal(p, h);
    if (r.empty()) {
      if (auto it = refused.find(h.name); it != refused.end()) r = it->second;
    }
    if (r.empty()) {
      out.push_back(i);
    } else {
      reasons += (reasons.empty() ? "" : "; ") + r;
    }
  }
  if (p.hosts.empty()) reasons = "no MX host";
  if (out.empty() && why != nullptr) *why = reasons;
  return out;
}

}  // namespace mxedge::policy
