// Prefix text <-> bytes; see ip_prefix.h.
#include "dataplane/xdp/ip_prefix.h"

#include <arpa/inet.h>

#include <charconv>

namespace mxedge::xdp {

std::optional<IpPrefix> IpPrefix::parse(std::string_view text) {
  std::string_view address = text;
  std::optional<unsigned> length;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    address = text.substr(0, slash);
    std::string_view digits = text.substr(slash + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || digits.size() > 3 || ec != std::errc() || end != digits.data() + digits.size()) {
      return std::nullopt;
    }
    length = value;
  }
  if (address.empty() || address.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  std::string nul_terminated(address);

  IpPrefix p;
  if (inet_pton(AF_INET, nul_terminated.c_str(), p.addr.data()) == 1) {
    p.family = Family::kIpv4;
  } else if (inet_pton(AF_INET6, nul_terminated.c_str(), p.addr.data()) == 1) {
    p.family = Family::kIpv6;
  } else {
    return std::nullopt;
  }
  unsigned max = p.max_length();
  unsigned len = length.value_or(max);
  if (len > max) return std::nullopt;
  p.length = static_cast<uint8_t>(len);

  for (unsigned bit = len; bit < max; ++bit) {
    if (p.addr[bit / 8] & (0x80u >> (bit % 8))) return std::nullopt;  // host bits set
  }
  return p;
}

IpPrefix IpPrefix::truncated(unsigned bits) const {
  IpPrefix p = *this;
  if (bits >= length) return p;
  p.length = static_cast<uint8_t>(bits);
  for (unsigned bit = bits; bit < max_length(); ++bit) p.addr[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  return p;
}

bool IpPrefix::contains(const IpPrefix& inner) const {
  return family == inner.family && length <= inner.length && inner.truncated(length) == *this;
}

std::string IpPrefix::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  if (!inet_ntop(is_ipv4() ? AF_INET : AF_INET6, addr.data(), buf, sizeof buf)) return "?";
  return std::string(buf) + "/" + std::to_string(length);
}

}  // namespace mxedge::xdp
