// loadgen_config.cc - parsers for mxedge-loadgen's option values.
//
// DESCRIPTION
//   Size suffixes follow the usual tool conventions: k/K, M, G and KiB, MiB,
//   GiB are powers of 1024; KB, MB, GB are powers of 1000; a trailing "B" alone
//   means bytes. Server names are resolved once, at start-up, so that no
//   worker ever blocks on DNS.
//
// STANDARDS
//   RFC 3986 section 3.2.2 (bracketed IPv6 literals).
//
// SECURITY
//   See loadgen_config.h.
#include "loadgen_config.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cstring>
#include <limits>

namespace mxedge::loadgen {

namespace {

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::size_t digits = 0;
  std::uint64_t value = 0;
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    const auto digit = static_cast<std::uint64_t>(text[digits] - '0');
    if (value > (kMax - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
    ++digits;
  }
  if (digits == 0) return std::nullopt;
  const std::string_view suffix = text.substr(digits);
  struct Unit {
    std::string_view name;
    std::uint64_t multiplier;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"b", 1},
      {"k", 1024},
      {"kib", 1024},
      {"kb", 1000},
      {"m", 1024 * 1024},
      {"mib", 1024 * 1024},
      {"mb", 1000 * 1000},
      {"g", 1024 * 1024 * 1024},
      {"gib", 1024 * 1024 * 1024},
      {"gb", 1000 * 1000 * 1000},
  };
  for (const Unit& unit : kUnits) {
    if (equals_ignoring_case(suffix, unit.name)) {
      if (value > kMax / unit.multiplier) return std::nullopt;
      return value * unit.multiplier;
    }
  }
  return std::nullopt;
}

bool split_host_port(std::string_view text, std::string& host, std::string& port) {
  std::string_view host_part;
  std::string_view port_part;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return false;
    host_part = text.substr(1, close - 1);
    port_part = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    host_part = text.substr(0, colon);
    port_part = text.substr(colon + 1);
    // An unbracketed IPv6 literal is ambiguous ("::1:25"); insist on brackets.
    if (host_part.find(':') != std::string_view::npos) return false;
  }
  if (host_part.empty() || port_part.empty() || port_part.size() > 5) return false;
  unsigned long port_number = 0;
  for (char c : port_part) {
    if (c < '0' || c > '9') return false;
    port_number = port_number * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port_number == 0 || port_number > 65535) return false;
  host.assign(host_part);
  port.assign(port_part);
  return true;
}

std::optional<SocketAddress> resolve_address(const std::string& host, const std::string& port, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* result = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &result);
  if (rc != 0) {
    error = gai_strerror(rc);
    return std::nullopt;
  }
  std::optional<SocketAddress> address;
  for (const addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    SocketAddress a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.length = ai->ai_addrlen;
    address = a;
    break;
  }
  freeaddrinfo(result);
  if (!address) error = "no IPv4 or IPv6 address";
  return address;
}

std::optional<SocketAddress> parse_ip_literal(const std::string& text) {
  SocketAddress a;
  sockaddr_in v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    std::memcpy(&a.storage, &v4, sizeof(v4));
    a.length = sizeof(v4);
    return a;
  }
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    std::memcpy(&a.storage, &v6, sizeof(v6));
    a.length = sizeof(v6);
    return a;
  }
  return std::nullopt;
}

bool is_safe_token(std::string_view text) {
  if (text.empty() || text.size() > 255) return false;
  for (char c : text) {
    if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>') return false;
  }
  return true;
}

}  // namespace mxedge::loadgen
