// The control plane's DNSSEC-validating resolver: libunbound in-process, validating from a configured
// trust anchor, by full recursion from root hints (or a stub for the root, as the lab uses) or through
// forwarders. Every answer carries its security status — secure, insecure, bogus (with the reason) or
// failure — never an AD bit taken from the network. Asynchronous: many lookups in flight, identical
// ones coalesced; results cached (TTL-aware, negative answers too, memory-bounded) on top of
// libunbound's own RRset cache.
//
// Threading: one thread owns a Resolver. libunbound runs on that thread too, on the resolver's
// libevent base (ub_ctx_create_event): no worker thread, no pipe between them. The owner drives the
// base — as its own event loop (event_base()) or through run_until().
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "controlplane/resolver/dns_answer.h"
#include "controlplane/resolver/ttl_cache.h"

struct ub_ctx;
struct event_base;
struct event;

namespace mxedge::resolver {

// The security of an answer (RFC 4033 §5 / RFC 4035 §4.3), plus failure: no usable answer at all
// (SERVFAIL that is not a validation failure, timeout, network error, malformed answer).
enum class Security : uint8_t { kSecure, kInsecure, kBogus, kFailure };
std::string_view to_string(Security s);

// What the answer says, when security is secure or insecure.
enum class AnswerKind : uint8_t { kData, kNoData, kNxDomain };
std::string_view to_string(AnswerKind k);

struct LookupResult {
  std::string qname;  // normalized
  uint16_t qtype = 0;
  Security security = Security::kFailure;
  AnswerKind kind = AnswerKind::kNoData;
  std::string why;  // the validator's reason when bogus; the cause when failure
  ParsedAnswer answer;
  uint32_t ttl = 0;  // as cached (after clamping)
  std::chrono::steady_clock::time_point expires{};  // when this answer leaves the cache

  bool secure_data() const { return security == Security::kSecure && kind == AnswerKind::kData; }
  // NXDOMAIN or NODATA proven by DNSSEC.
  bool secure_denial() const { return security == Security::kSecure && kind != AnswerKind::kData; }
};

struct ResolverOptions {
  // DS or DNSKEY records in zone-file format. Default: the IANA root anchors (Debian's dns-root-data).
  std::string trust_anchor_file = "/usr/share/dns/root.key";
  // Root hints for full recursion; empty: libunbound's built-in hints.
  std::string root_hints_file;
  // Send queries for the root to these servers ("ADDR" or "ADDR@PORT") instead of priming from hints.
  std::vector<std::string> root_stub;
  // Forward everything to these recursive resolvers ("ADDR" or "ADDR@PORT"); validation stays local.
  std::vector<std::string> forwarders;
  // A lookup with no answer by then fails with "timeout" (libunbound's own retries happen inside).
  std::chrono::milliseconds query_timeout{10000};
  // Retries towards one upstream server after an error answer (libunbound outbound-msg-retry, at
  // least 1). Unanswered queries are retried by libunbound's own back-off until query_timeout.
  int retries = 3;
  int edns_buffer_size = 1232;
  bool use_ipv6_transport = true;
  // Allow servers on 127.0.0.0/8 and ::1 (the lab; libunbound refuses them by default).
  bool allow_loopback_servers = false;
  // Zones libunbound must not answer from its built-in local data (e.g. "test." in the lab).
  std::vector<std::string> nodefault_zones;
  // Cache: memory budget and TTL clamps.
  size_t cache_bytes = 32u << 20;
  std::chrono::seconds max_ttl{86400};
  std::chrono::seconds max_negative_ttl{3600};
  std::chrono::seconds bogus_ttl{60};    // how long a bogus answer is remembered
  std::chrono::seconds failure_ttl{5};   // how long a failure is remembered (0: not at all)
  // libunbound's log output (validation details at val-log-level 2); empty: discarded.
  std::string log_file;
};

struct ResolverCounters {
  uint64_t lookups = 0;
  uint64_t queries_started = 0;  // handed to libunbound (cache misses that were not coalesced)
  uint64_t coalesced = 0;
  uint64_t timeouts = 0;
  uint64_t secure = 0, insecure = 0, bogus = 0, failure = 0;
};

class Resolver {
 public:
  using Result = std::shared_ptr<const LookupResult>;
  // `from_cache` is true when the answer came from this resolver's cache.
  using Callback = std::function<void(const Result&, bool from_cache)>;

  // nullptr with `error` set when libunbound rejects the options or the trust anchor cannot be read.
  static std::unique_ptr<Resolver> create(const ResolverOptions& options, std::string* error);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Looks up (`name`, `type`, IN). A cached (or local-data) answer is delivered before lookup()
  // returns; otherwise the callback runs from the event base. Identical lookups in flight share one
  // query. A lookup unanswered after query_timeout fails with "timeout".
  void lookup(std::string_view name, uint16_t type, Callback callback);

  // The libevent base libunbound's sockets and the lookup deadlines live on.
  struct event_base* event_base() const { return base_; }
  size_t in_flight() const { return pending_.size(); }

  // Runs the event base until `done()` is true or nothing is in flight.
  void run_until(const std::function<bool()>& done);

  CacheStats cache_stats() const { return cache_.stats(); }
  const ResolverCounters& counters() const { return counters_; }
  const ResolverOptions& options() const { return options_; }

 private:
  // Handed to libunbound and libevent as callback arguments.
  struct Token {
    Resolver* self;
    uint64_t seq;
  };
  struct Pending {
    uint64_t seq;
    int async_id = 0;
    std::string key;
    std::string qname;
    uint16_t qtype;
    Token* answer_token = nullptr;  // owned by libunbound's callback until it runs
    std::unique_ptr<Token> timer_token;
    struct event* timer = nullptr;
    std::vector<Callback> callbacks;
  };

  explicit Resolver(const ResolverOptions& options);
  static void on_answer(void* arg, int rcode, void* packet, int packet_len, int sec, char* why_bogus, int ratelimited);
  static void on_timeout(int fd, short what, void* arg);
  void complete(uint64_t seq, std::shared_ptr<LookupResult> result);
  std::chrono::seconds cache_ttl(const LookupResult& r) const;

  ResolverOptions options_;
  struct event_base* base_ = nullptr;
  ub_ctx* ctx_ = nullptr;
  FILE* log_ = nullptr;
  uint64_t next_seq_ = 1;
  std::unordered_map<uint64_t, Pending> pending_;
  std::unordered_map<std::string, uint64_t> pending_by_key_;
  TtlCache<LookupResult> cache_;
  ResolverCounters counters_;
};

// What libunbound reports for a finished lookup (ub_resolve_event's callback arguments).
struct RawAnswer {
  int rcode = 0;                      // 0, or the DNS rcode of a failure (mostly SERVFAIL)
  std::span<const uint8_t> packet;    // the answer in wire format
  enum Sec { kInsecure = 0, kBogus = 1, kSecure = 2 } sec = kInsecure;
  const char* why_bogus = nullptr;
  bool ratelimited = false;
};

// Builds a LookupResult from libunbound's answer (exposed for tests and the fuzz target).
std::shared_ptr<LookupResult> make_lookup_result(std::string_view qname, uint16_t qtype, const RawAnswer& raw);

}  // namespace mxedge::resolver
