// CRC-32C, slicing-by-1 over a 256-entry table built at first use.
#include "dataplane/spool/crc32c.h"

#include <array>

namespace mxedge::spool {
namespace {

std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (0x82f63b78u ^ (c >> 1)) : (c >> 1);
    t[i] = c;
  }
  return t;
}

}  // namespace

uint32_t crc32c(uint32_t crc, const void* data, size_t length) {
  static const std::array<uint32_t, 256> table = make_table();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < length; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

}  // namespace mxedge::spool
