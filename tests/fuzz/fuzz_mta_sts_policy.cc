// Fuzz target: the MTA-STS policy and TXT parsers and the MX pattern match (policy/mta_sts.h), fed
// what a hostile policy host or DNS server could send.
#include <cstdint>
#include <string>
#include <string_view>

#include "policy/mta_sts.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxedge::policy;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  StsError err;
  if (auto p = parse_sts_policy(in, &err)) {
    if (p->max_age > kStsMaxAge) __builtin_trap();
    if (p->mode != StsMode::kNone && p->mx.empty()) __builtin_trap();
    for (const std::string& mx : p->mx) {
      const std::string_view d = mx.starts_with("*.") ? std::string_view(mx).substr(2) : std::string_view(mx);
      if (!is_a_label_domain(d)) __builtin_trap();
      (void)sts_mx_matches(mx, "mx.example.com");
    }
  } else if (err.message.empty()) {
    __builtin_trap();  // every rejection says why
  }
  std::string txt_err;
  (void)parse_sts_txt({std::string(in)}, &txt_err);
  const size_t half = size / 2;
  (void)sts_mx_matches(in.substr(0, half), in.substr(half));
  return 0;
}
