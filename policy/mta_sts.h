// MTA-STS (RFC 8461) text formats: the `_mta-sts` TXT record (§3.1) and the policy file (§3.2),
// parsed strictly by their ABNF (literals are case-sensitive, %s), and the MX pattern match (§4.1).
// Pure functions, no I/O: the control plane's discovery and fetch use them, the fuzz target too.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mxedge::policy {

enum class StsMode : uint8_t { kEnforce, kTesting, kNone };
std::string_view to_string(StsMode m);

struct StsPolicy {
  StsMode mode = StsMode::kNone;
  uint32_t max_age = 0;          // seconds, 0..31557600
  std::vector<std::string> mx;   // patterns, lower case: "mx.example.com" or "*.example.com"
  size_t extensions = 0;         // unknown fields, ignored
};

struct StsError {
  size_t line = 0;  // 1-based; 0 when not tied to a line
  std::string message;
  std::string to_string() const;
};

inline constexpr uint32_t kStsMaxAge = 31557600;

// Parses a policy body. On error returns nullopt and the first problem found.
std::optional<StsPolicy> parse_sts_policy(std::string_view body, StsError* error);

// The TXT record: returns the policy id ("v=STSv1; id=20160831085700Z;"). `records` are the TXT
// records at _mta-sts.<domain>, each with its character-strings already joined. Records that do not
// start with "v=STSv1" are ignored; none left means no policy (nullopt, `error` empty); more than one,
// or one that does not parse, is an error (nullopt, `error` set).
std::optional<std::string> parse_sts_txt(const std::vector<std::string>& records, std::string* error);

// True when `host` (an MX host name, A-label form; a trailing dot is ignored) matches `pattern`
// ("mx.example.com" exactly, or "*.example.com": exactly one more leftmost label). Case-insensitive.
bool sts_mx_matches(std::string_view pattern, std::string_view host);
bool sts_policy_allows(const StsPolicy& policy, std::string_view host);

// RFC 5321 Domain in A-label form (LDH labels of 1-63 octets, no leading or trailing hyphen, at most
// 253 octets, no trailing dot). Used for mx patterns.
bool is_a_label_domain(std::string_view name);

}  // namespace mxedge::policy
