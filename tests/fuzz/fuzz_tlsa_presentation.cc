// Fuzz target: the TLSA presentation-format parser (policy/tlsa.h: "3 1 1 <hex>", what operators
// type into `mxedgectl dane verify --tlsa` and configs) and the usability classification; a record
// that parses must print and parse back to itself.
#include <cstdint>
#include <string>
#include <string_view>

#include "policy/tlsa.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxedge::policy;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string err;
  if (auto r = parse_tlsa_presentation(in, &err)) {
    (void)to_string(classify(*r));
    std::string err2;
    auto back = parse_tlsa_presentation(to_presentation(*r), &err2);
    if (!back || !(*back == *r)) __builtin_trap();
  } else if (err.empty()) {
    __builtin_trap();
  }
  if (auto w = parse_tlsa_rdata(std::span<const uint8_t>(data, size))) (void)classify(*w);
  return 0;
}
