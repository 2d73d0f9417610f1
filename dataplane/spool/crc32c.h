// CRC-32C (Castagnoli), used to detect torn or corrupted spool records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mxedge::spool {

uint32_t crc32c(uint32_t crc, const void* data, size_t length);
inline uint32_t crc32c(std::string_view s) { return crc32c(0, s.data(), s.size()); }

namespace detail {
// The table-driven path, exposed so tests can compare it with the hardware path.
uint32_t crc32c_portable_for_test(uint32_t crc, const void* data, size_t length);
}  // namespace detail

}  // namespace mxedge::spool
