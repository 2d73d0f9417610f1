// Fetches MTA-STS policies (RFC 8461 §3.3): https://mta-sts.<domain>/.well-known/mta-sts.txt with
// libcurl's multi interface on the resolver's libevent base, so many fetches are in flight and none
// blocks. The policy host's addresses come from mxedge's own resolver (handed to curl with
// CURLOPT_RESOLVE: no blocking getaddrinfo). HTTPS only with WebPKI validation of the host name (SNI
// set), TLS 1.2 or later, no redirects, status 200 only, Content-Type text/plain (parameters
// allowed), the 64 KiB limit enforced while receiving as well as from Content-Length, connect and
// total timeouts, a configurable CA file (the system store by default) and an optional proxy.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "controlplane/resolver/resolver.h"

typedef void CURLM;
struct event;

namespace mxedge::mta_sts {

struct FetchOptions {
  std::string ca_file;  // PEM bundle; empty: the system store
  std::string proxy;    // "http://host:port"; empty: none (environment variables are ignored)
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds total_timeout{30000};
  size_t max_body = 64 * 1024;  // RFC 8461 §3.3: senders may limit the policy to 64 KiB
  uint16_t port = 443;          // tests only; RFC 8461 fixes 443
};

struct FetchResult {
  bool ok = false;  // a 200 text/plain body within the limits
  std::string domain;
  std::string url;
  std::string body;
  long http_status = 0;
  std::string content_type;
  std::string error;  // why not ok: DNS, connection, TLS, HTTP status, type, size, timeout
  std::vector<std::string> addresses;
  double seconds = 0;
};

class PolicyFetcher {
 public:
  using Callback = std::function<void(const FetchResult&)>;

  PolicyFetcher(resolver::Resolver& resolver, const FetchOptions& options);
  ~PolicyFetcher();
  PolicyFetcher(const PolicyFetcher&) = delete;
  PolicyFetcher& operator=(const PolicyFetcher&) = delete;

  // Fetches the policy of `domain`; the callback runs from the event base (never inside fetch()).
  void fetch(std::string_view domain, Callback callback);
  size_t in_flight() const { return transfers_.size() + resolving_; }

  // Runs the event base until `done()` is true or nothing is in flight (tools and tests).
  void run_until(const std::function<bool()>& done);

 private:
  struct Transfer;
  struct Socket;
  static int on_socket(void* easy, int fd, int what, void* userp, void* socketp);
  static int on_timer(CURLM* multi, long timeout_ms, void* userp);
  static void on_socket_event(int fd, short what, void* arg);
  static void on_timer_event(int fd, short what, void* arg);
  void start_transfer(std::unique_ptr<Transfer> t);
  void check_done();

  resolver::Resolver& resolver_;
  FetchOptions options_;
  CURLM* multi_ = nullptr;
  struct event* timer_ = nullptr;
  size_t resolving_ = 0;
  std::unordered_map<Transfer*, std::unique_ptr<Transfer>> transfers_;
};

}  // namespace mxedge::mta_sts
