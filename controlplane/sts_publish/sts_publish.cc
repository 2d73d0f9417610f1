#include "controlplane/sts_publish/sts_publish.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

namespace mxedge::sts_publish {

policy::StsMode publish_mode(config::v1::StsPublishMode mode) {
  switch (mode) {
    case config::v1::STS_PUBLISH_MODE_ENFORCE: return policy::StsMode::kEnforce;
    case config::v1::STS_PUBLISH_MODE_NONE: return policy::StsMode::kNone;
    default: return policy::StsMode::kTesting;
  }
}

std::string policy_text(policy::StsMode mode, const std::vector<std::string>& mx, uint32_t max_age) {
  std::string t = "version: STSv1\r\nmode: " + std::string(policy::to_string(mode)) + "\r\n";
  for (const std::string& m : mx) t += "mx: " + m + "\r\n";
  t += "max_age: " + std::to_string(max_age) + "\r\n";
  return t;
}

std::string policy_text(const config::v1::Config& config) {
  const auto& p = config.mta_sts_publish();
  const int64_t age = std::clamp<int64_t>(p.max_age().seconds(), 0, policy::kStsMaxAge);
  return policy_text(publish_mode(p.mode()), std::vector<std::string>(p.mx().begin(), p.mx().end()), static_cast<uint32_t>(age));
}

std::string policy_id(std::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len && hex.size() < 20; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 0xf];
  }
  return hex;
}

std::string txt_value(std::string_view id) { return "v=STSv1; id=" + std::string(id) + ";"; }

std::string txt_record(std::string_view domain, std::string_view id) {
  std::string d(domain);
  if (!d.empty() && d.back() == '.') d.pop_back();
  return "_mta-sts." + d + ". IN TXT \"" + txt_value(id) + "\"";
}

std::optional<std::string> served_domain(std::string_view host_header, const std::vector<std::string>& domains) {
  std::string h;
  for (char c : host_header) h += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // "name:port" (a bracketed IPv6 literal never names a domain).
  if (const size_t colon = h.rfind(':'); colon != std::string::npos) {
    const std::string port = h.substr(colon + 1);
    if (!std::all_of(port.begin(), port.end(), ::isdigit)) return std::nullopt;
    h.resize(colon);
  }
  if (!h.empty() && h.back() == '.') h.pop_back();
  static constexpr std::string_view kPrefix = "mta-sts.";
  if (!h.starts_with(kPrefix)) return std::nullopt;
  const std::string d = h.substr(kPrefix.size());
  if (std::find(domains.begin(), domains.end(), d) == domains.end()) return std::nullopt;
  return d;
}

}  // namespace mxedge::sts_publish
