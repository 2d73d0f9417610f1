// CRC-32C (Castagnoli), used to detect torn or corrupted spool records. Table-driven; small and fast
// enough next to an fdatasync.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mxedge::spool {

uint32_t crc32c(uint32_t crc, const void* data, size_t length);
inline uint32_t crc32c(std::string_view s) { return crc32c(0, s.data(), s.size()); }

}  // namespace mxedge::spool
