#include "controlplane/analyzer/verdict.h"

#include <string>
#include <vector>

namespace mxedge::analyzer {
namespace {

using policy::HostPolicy;
using policy::TlsRequirement;

std::string target_of(const HostPolicy& h, std::string_view address) {
  std::string a(address);
  if (a.find(':') != std::string::npos) a = "[" + a + "]";
  return h.name + " " + a + (h.port != 25 ? ":" + std::to_string(h.port) : "");
}

std::string version_name(uint16_t v) {
  switch (v) {
    case 0x0304:
      return "TLSv1.3";
    case 0x0303:
      return "TLSv1.2";
    default:
      return "TLS " + std::to_string(v);
  }
}

// Why `probe` does not satisfy `h` (empty: it does), and the RFC 8460 result type of that.
std::string unmet(const HostPolicy& h, const mgmt::v1::Probe& probe, std::string* result_type) {
  if (!probe.connected()) return "no connection" + (probe.error().empty() ? "" : ": " + probe.error());
  if (!probe.ehlo_ok()) return probe.error().empty() ? "no SMTP service" : probe.error();
  if (!probe.starttls_offered()) {
    if (h.tls == TlsRequirement::kMay && h.cleartext_allowed) return {};
    *result_type = "starttls-not-supported";
    return "STARTTLS not offered, but the " + std::string(policy::to_string(h.tls)) + " requirement needs TLS";
  }
  if (!probe.tls()) {
    if (h.tls != TlsRequirement::kMay) *result_type = "validation-failure";
    return "TLS handshake failed" + (probe.error().empty() ? "" : ": " + probe.error());
  }
  const uint16_t version = tls_version_number(probe.tls_version());
  if (version < h.min_tls_version) {
    return probe.tls_version() + " is below the connector's minimum " + version_name(h.min_tls_version);
  }
  switch (h.tls) {
    case TlsRequirement::kDane:
      if (probe.dane() == "verified") return {};
      *result_type = probe.dane_result_type().empty() ? "validation-failure" : probe.dane_result_type();
      return "DANE: " + (probe.dane_detail().empty() ? probe.dane() : probe.dane_detail());
    case TlsRequirement::kWebPki:
      if (probe.webpki() == "verified") return {};
      *result_type = probe.webpki_result_type().empty() ? "validation-failure" : probe.webpki_result_type();
      return "MTA-STS: certificate not valid for " + h.name + ": " +
             (probe.webpki_detail().empty() ? probe.webpki() : probe.webpki_detail());
    case TlsRequirement::kMay:
    case TlsRequirement::kEncrypt:
      return {};
  }
  return "unknown requirement";
}

}  // namespace

uint16_t tls_version_number(std::string_view name) {
  if (name == "TLSv1.3") return 0x0304;
  if (name == "TLSv1.2") return 0x0303;
  if (name == "TLSv1.1") return 0x0302;
  if (name == "TLSv1") return 0x0301;
  return 0;
}

mgmt::v1::ModeVerdict judge(const policy::DestinationPolicy& p, const ProbeLookup& probes, bool probed) {
  mgmt::v1::ModeVerdict v;
  v.set_connector(p.connector);
  v.set_dane_mode(std::string(policy::to_string(p.dane_mode)));
  v.set_mta_sts_mode(std::string(policy::to_string(p.sts_mode)));
  v.set_policy(std::string(policy::to_string(p.verdict)));
  v.set_probed(probed && p.verdict == policy::PolicyVerdict::kDeliver);
  if (p.verdict != policy::PolicyVerdict::kDeliver) {
    v.set_outcome(v.policy());
    v.set_reason(p.reason);
    v.set_result_type(p.result_type);
    return v;
  }
  if (!probed) {
    const HostPolicy& h = p.hosts.front();
    v.set_outcome("deliver");
    v.set_host(h.name);
    if (!h.addresses.empty()) v.set_address(h.addresses.front());
    v.set_requirement(std::string(policy::to_string(h.tls)));
    v.set_reason("the policy allows " + std::to_string(p.hosts.size()) + " host(s), first " + h.name + " (" +
                 v.requirement() + "): " + h.reason + "; not probed");
    return v;
  }

  std::string common_type;
  bool same_type = true;
  size_t failures = 0;
  for (const HostPolicy& h : p.hosts) {
    for (const std::string& address : h.addresses) {
      const mgmt::v1::Probe* probe = probes(h.name, address);
      std::string type;
      std::string why = probe == nullptr ? "not probed" : unmet(h, *probe, &type);
      if (why.empty()) {
        v.set_outcome("deliver");
        v.set_host(h.name);
        v.set_address(address);
        v.set_requirement(std::string(policy::to_string(h.tls)));
        std::string how;
        if (!probe->tls()) {
          v.set_authentication("cleartext");
          how = "cleartext (STARTTLS not offered; allowed when no policy applies)";
        } else {
          v.set_tls_version(probe->tls_version());
          const std::string tls = probe->tls_version() + " " + probe->cipher();
          switch (h.tls) {
            case TlsRequirement::kDane:
              v.set_authentication("dane");
              how = "DANE-verified " + tls + (probe->dane_detail().empty() ? "" : " (" + probe->dane_detail() + ")");
              break;
            case TlsRequirement::kWebPki:
              v.set_authentication("webpki");
              how = "MTA-STS (WebPKI-verified) " + tls;
              break;
            case TlsRequirement::kMay:
            case TlsRequirement::kEncrypt:
              v.set_authentication("none");
              how = std::string(h.tls == TlsRequirement::kMay ? "opportunistic" : "mandatory") +
                    " TLS without authentication, " + tls;
              if (h.sts_testing && probe->webpki() != "verified")
                how += "; MTA-STS testing would report " +
                       (probe->webpki_result_type().empty() ? std::string("a failure") : probe->webpki_result_type());
              break;
          }
        }
        v.set_reason(target_of(h, address) + ": " + how);
        return v;
      }
      ++failures;
      v.add_attempts(target_of(h, address) + ": " + why + (type.empty() ? "" : " (" + type + ")"));
      if (failures == 1)
        common_type = type;
      else if (type != common_type)
        same_type = false;
    }
  }
  v.set_outcome("defer");
  std::string reasons;
  for (const auto& a : v.attempts()) reasons += (reasons.empty() ? "" : "; ") + a;
  v.set_reason("no MX host would accept the connection under this policy: " +
               (reasons.empty() ? "no addresses" : reasons));
  if (same_type) v.set_result_type(common_type);
  return v;
}

}  // namespace mxedge::analyzer
