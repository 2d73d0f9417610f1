// loadgen_config.h - the settings of one mxedge-loadgen run.
//
// DESCRIPTION
//   LoadgenConfig holds the command line after validation and conversion: the
//   server as a socket address, sizes in bytes, the recipient list expanded.
//   It is built once by loadgen_main.cc and then shared read-only by all
//   worker threads. The parsers below are the pieces of that conversion that
//   CLI11 cannot do by itself.
//
// STANDARDS
//   RFC 3986 section 3.2.2: an IPv6 literal is written in brackets,
//   "[::1]:2525". RFC 5321 section 4.1.2: the address forms accepted for
//   --from and --to (checked only for characters that would break a command).
//
// SECURITY
//   Values come from the operator, not the network. Addresses and the EHLO name
//   are checked for CR, LF, controls, space and angle brackets so that they can
//   be pasted into SMTP commands and headers without further quoting.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mxedge::loadgen {

enum class TlsMode { kNone, kStarttls, kImplicit };

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  [[nodiscard]] const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  [[nodiscard]] int family() const { return storage.ss_family; }
};

struct LoadgenConfig {
  // Where to connect.
  std::string server_text;
  std::string server_host;
  SocketAddress server;
  std::vector<SocketAddress> source_addresses;

  // TLS.
  TlsMode tls = TlsMode::kStarttls;
  bool verify = false;
  std::string ca_file;
  std::string verify_name;
  std::string sni;
  int tls_min_version = 0;  // OpenSSL protocol version constant, 0 = library default
  int tls_max_version = 0;

  // How much load, and how it is shaped.
  unsigned threads = 1;
  std::uint64_t sessions = 0;  // 0: no limit (--duration decides)
  unsigned concurrency = 10;
  double rate = 0;        // sessions started per second; 0: closed loop
  double duration_s = 0;  // 0: no limit (--sessions decides)
  double timeout_s = 60;

  // What each session does.
  std::uint64_t messages_per_session = 1;
  std::size_t message_size = 4096;
  std::string from = "loadgen@loadgen.example.test";
  std::vector<std::string> recipients;
  std::string ehlo = "loadgen.example.test";
  bool pipelining_allowed = true;

  // Idle-session mode (--idle): 0 sessions means the mode is off.
  std::uint64_t idle_sessions = 0;
  double hold_s = 0;

  // Reporting.
  std::string json_path;
  bool timeline = false;  // per-second slots in the JSON report (RunStats::timeline)
  bool quiet = false;
  bool exit_on_error = false;

  [[nodiscard]] bool idle_mode() const { return idle_sessions != 0; }
  [[nodiscard]] bool open_loop() const { return rate > 0; }
};

// "4096", "4KiB", "4k", "1MiB", "1MB" (10^6), ... in bytes. nullopt on syntax
// error or overflow.
std::optional<std::uint64_t> parse_size(std::string_view text);

// Splits "host:port" or "[v6]:port". Returns false when the form is wrong.
bool split_host_port(std::string_view text, std::string& host, std::string& port);

// Resolves host and numeric port (a literal or a name, via getaddrinfo) into
// the first stream address. On failure returns nullopt and sets error.
std::optional<SocketAddress> resolve_address(const std::string& host, const std::string& port, std::string& error);

// Parses a literal IPv4 or IPv6 address (no port) for --source-addresses.
std::optional<SocketAddress> parse_ip_literal(const std::string& text);

// True if text can be placed into an SMTP command or header as is (see
// SECURITY above).
bool is_safe_token(std::string_view text);

}  // namespace mxedge::loadgen
