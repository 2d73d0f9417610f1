// Fuzz target: the TLS-RPT DNS record parser (policy/tlsrpt.h), fed what a hostile DNS server could
// put in a `_smtp._tls` TXT record.
#include <cstdint>
#include <string>
#include <string_view>

#include "policy/tlsrpt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxedge::policy;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string err;
  const bool looks = is_tlsrpt_record(in);
  if (auto r = parse_tlsrpt_record(in, &err)) {
    if (!looks) __builtin_trap();     // a record that parses is one senders would pick
    if (r->rua.empty()) __builtin_trap();  // rua is required
    for (const std::string& uri : r->rua)
      if (uri.find(':') == std::string::npos) __builtin_trap();  // mailto: or https: URIs only
  } else if (err.empty()) {
    __builtin_trap();  // every rejection says why
  }
  return 0;
}
