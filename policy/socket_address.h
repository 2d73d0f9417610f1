// "ADDRESS:PORT" / "[IPv6]:PORT" text ⇄ sockaddr, for listeners, next hops and logs.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>

namespace mxedge {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  uint16_t port() const;
  std::string ip_text() const;  // "127.0.0.1", "::1"
  std::string to_string() const;  // "127.0.0.1:25", "[::1]:25"

  // Numeric addresses only: configuration never depends on DNS at start-up.
  static std::optional<SocketAddress> parse(std::string_view text);
  static std::optional<SocketAddress> from_ip_port(std::string_view ip, uint16_t port);
  static SocketAddress from_sockaddr(const sockaddr* sa, socklen_t len);
};

}  // namespace mxedge
