#include "controlplane/policy_compiler/policy_json.h"

namespace mxedge::policy_compiler {

nlohmann::json to_json(const policy::DestinationPolicy& p) {
  nlohmann::json j{{"domain", p.domain},
                   {"connector", p.connector},
                   {"dane_mode", policy::to_string(p.dane_mode)},
                   {"mta_sts_mode", policy::to_string(p.sts_mode)},
                   {"verdict", policy::to_string(p.verdict)},
                   {"dnssec", p.dnssec},
                   {"mta_sts", p.sts},
                   {"expires_at", p.expires_at},
                   {"version", p.version}};
  if (!p.reason.empty()) j["reason"] = p.reason;
  if (!p.result_type.empty()) j["result_type"] = p.result_type;
  if (!p.enhanced_status.empty()) j["enhanced_status"] = p.enhanced_status;
  if (!p.sts_id.empty()) j["mta_sts_id"] = p.sts_id;
  if (!p.sts_mx.empty()) j["mta_sts_mx"] = p.sts_mx;
  j["hosts"] = nlohmann::json::array();
  for (const auto& h : p.hosts) {
    nlohmann::json hj{{"name", h.name},
                      {"preference", h.preference},
                      {"addresses", h.addresses},
                      {"tls", policy::to_string(h.tls)},
                      {"min_tls_version", h.min_tls_version == 0x0304 ? "TLSv1.3" : "TLSv1.2"},
                      {"reason", h.reason}};
    if (h.tls == policy::TlsRequirement::kDane) {
      nlohmann::json t = nlohmann::json::array();
      for (const auto& r : h.tlsa) t.push_back(policy::to_presentation(r));
      hj["tlsa"] = t;
      hj["dane_names"] = h.dane_names;
    }
    if (h.sts_testing) hj["mta_sts_testing"] = true;
    if (h.port != 25) hj["port"] = h.port;
    if (h.tls == policy::TlsRequirement::kMay) hj["cleartext_allowed"] = h.cleartext_allowed;
    j["hosts"].push_back(hj);
  }
  j["excluded"] = nlohmann::json::array();
  for (const auto& e : p.excluded) {
    nlohmann::json ej{{"name", e.name}, {"reason", e.reason}};
    if (!e.result_type.empty()) ej["result_type"] = e.result_type;
    j["excluded"].push_back(ej);
  }
  return j;
}

std::string to_text(const policy::DestinationPolicy& p) {
  std::string s = p.domain + ": " + std::string(policy::to_string(p.verdict)) + " (connector " + p.connector + ", DANE " +
                  std::string(policy::to_string(p.dane_mode)) + ", MTA-STS " + std::string(policy::to_string(p.sts_mode)) +
                  "; MX " + p.dnssec + ", MTA-STS policy " + p.sts + ")\n";
  if (!p.reason.empty()) {
    s += "  " + (p.enhanced_status.empty() ? std::string() : p.enhanced_status + " ") + p.reason;
    if (!p.result_type.empty()) s += " [" + p.result_type + "]";
    s += "\n";
  }
  for (const auto& h : p.hosts) {
    s += "  " + std::to_string(h.preference) + " " + h.name + ": " + std::string(policy::to_string(h.tls)) + " — " + h.reason + "\n";
    for (const auto& r : h.tlsa) s += "      TLSA " + policy::to_presentation(r) + "\n";
  }
  for (const auto& e : p.excluded) s += "  not used: " + e.name + ": " + e.reason + "\n";
  return s;
}

}  // namespace mxedge::policy_compiler
