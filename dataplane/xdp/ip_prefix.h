// IPv4/IPv6 prefixes as operators write them ("192.0.2.0/24", "2001:db8::/32", or a bare address for
// a single host) and as the LPM tries of bpf/mxedge_abi.h store them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mxedge::xdp {

struct IpPrefix {
  enum class Family : uint8_t { kIpv4, kIpv6 };

  Family family = Family::kIpv4;
  std::array<uint8_t, 16> addr{};  // network byte order; IPv4 uses the first 4 bytes
  uint8_t length = 0;              // prefix length in bits

  // Rejects host bits set beyond the length ("192.0.2.1/24"): such an entry would look like a host
  // but block the whole network. A bare address is a /32 or /128.
  static std::optional<IpPrefix> parse(std::string_view text);
  std::string to_string() const;  // canonical: "192.0.2.0/24", "2001:db8::/32"

  bool is_ipv4() const { return family == Family::kIpv4; }
  unsigned max_length() const { return is_ipv4() ? 32 : 128; }
  // The prefix of `bits` (<= length) bits that contains this one.
  IpPrefix truncated(unsigned bits) const;
  // Whether every address of `inner` is in this prefix (a prefix contains itself).
  bool contains(const IpPrefix& inner) const;

  // Ordered by family, address, length: the prefixes inside a prefix P are contiguous from P on.
  friend auto operator<=>(const IpPrefix&, const IpPrefix&) = default;
};

}  // namespace mxedge::xdp
