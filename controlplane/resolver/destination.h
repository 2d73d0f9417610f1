// Destination resolution for outbound SMTP by the rules of RFC 7672 §2.2 and Postfix's DANE ladder:
// MX (null MX, implicit MX), then per MX host the A and AAAA answers with the security of every CNAME
// hop, then TLSA at _25._tcp.<host> — only for hosts whose address answers are secure, the
// CNAME-expanded name first and the original name second. The result is a structured, immutable
// value the policy layer reads; DaneState says what it means for delivery to each host.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "controlplane/resolver/resolver.h"
#include "policy/tlsa.h"

namespace mxedge::resolver {

struct HopSecurity {
  std::string owner;
  std::string target;
  Security security = Security::kFailure;  // of the CNAME RRset at `owner`
};

// One address family's answer for a host.
struct AddressAnswer {
  Security security = Security::kFailure;
  AnswerKind kind = AnswerKind::kNoData;
  std::string why;
  std::vector<std::string> addresses;
  std::vector<HopSecurity> cname_chain;
  std::string canonical_name;
};

enum class TlsaState : uint8_t {
  kNotLooked,     // the host's addresses are not secure: DANE does not apply (no TLSA lookup made)
  kUsable,        // secure TLSA RRset with at least one usable record: authenticate with it
  kAllUnusable,   // secure TLSA RRset, none usable: mandatory TLS without authentication (RFC 7672 §2.2)
  kSecureDenial,  // secure NXDOMAIN/NODATA: no DANE, downgrade permitted
  kInsecure,      // TLSA answer insecure: no DANE, downgrade permitted
  kBogus,         // validation failed: defer
  kFailure,       // lookup failed (SERVFAIL, timeout): defer
};
std::string_view to_string(TlsaState s);

struct TlsaRecordResult {
  policy::TlsaRecord record;
  policy::TlsaUsability usability = policy::TlsaUsability::kUsable;
};

struct TlsaResult {
  TlsaState state = TlsaState::kNotLooked;
  std::string qname;  // the _25._tcp name whose answer decided
  std::vector<std::string> tried;
  std::vector<TlsaRecordResult> records;
  std::string why;
};

// What DANE means for delivery to one host (RFC 7672 §2.1, §2.2).
enum class DaneState : uint8_t {
  kAuthenticate,       // usable TLSA: TLS required, peer authenticated by the TLSA records
  kEncryptOnly,        // TLSA present but all unusable: TLS required, no authentication
  kNoDane,             // insecure or securely denied: other policy (MTA-STS, opportunistic) applies
  kDefer,              // bogus or failed lookups: do not deliver to this host now
};
std::string_view to_string(DaneState s);

struct MxHost {
  std::string name;
  uint16_t preference = 0;
  AddressAnswer a;
  AddressAnswer aaaa;
  // Combined: secure when every answered family is secure and at least one has data; insecure when
  // any is insecure; bogus/failure when no family answered usably.
  Security address_security = Security::kFailure;
  std::string address_why;
  TlsaResult tlsa;

  std::vector<std::string> addresses() const;
  DaneState dane() const;
};

enum class MxState : uint8_t {
  kRecords,   // MX records (hosts in preference order)
  kNullMx,    // RFC 7505: the domain accepts no mail
  kNoMx,      // no MX: the domain itself is the host (RFC 5321 §5.1)
  kNxDomain,  // the domain does not exist
  kBogus,     // the MX answer failed validation: defer
  kFailure,   // the MX lookup failed: defer
};
std::string_view to_string(MxState s);

struct DestinationResult {
  std::string domain;
  MxState mx_state = MxState::kFailure;
  Security mx_security = Security::kFailure;
  std::string why;
  std::vector<HopSecurity> mx_cname_chain;
  std::vector<MxHost> hosts;  // ascending preference; equal preferences in name order
  bool hosts_truncated = false;
  uint32_t ttl = 0;  // how long the whole result may be cached

  // Host indexes in delivery order: ascending preference, random order among equal preferences
  // (RFC 5321 §5.1).
  std::vector<size_t> delivery_order(std::mt19937& rng) const;
};

struct DestinationOptions {
  size_t max_mx_hosts = 10;  // more are ignored (Postfix smtp_mx_address_limit spirit)
  uint16_t tlsa_port = 25;
  size_t cache_bytes = 16u << 20;
};

class DestinationResolver {
 public:
  using Result = std::shared_ptr<const DestinationResult>;
  using Callback = std::function<void(const Result&, bool from_cache)>;

  DestinationResolver(Resolver& resolver, const DestinationOptions& options);
  ~DestinationResolver();

  // Resolves `domain`; a cached result is delivered before resolve() returns, otherwise from the
  // resolver's event base. Concurrent resolutions of one domain share the work.
  void resolve(std::string_view domain, Callback callback);

  // A configured host (a connector's smart host): its addresses and TLSA at _<port>._tcp.<host>,
  // resolved and classified as for an MX host, without an MX lookup. The result has mx_state kNoMx
  // and one host; mx_security is kSecure (the name comes from the configuration, not from DNS).
  void resolve_host(std::string_view host, uint16_t port, Callback callback);

  // The cached result only (no DNS); nullptr when absent or expired. The warm path.
  Result cached(std::string_view domain);

  CacheStats cache_stats() const { return cache_.stats(); }
  size_t in_progress() const { return jobs_.size(); }

 private:
  struct Job;
  friend struct Job;
  void finish(const std::string& domain, std::shared_ptr<DestinationResult> result,
              std::chrono::steady_clock::time_point expires);

  Resolver& resolver_;
  DestinationOptions options_;
  TtlCache<DestinationResult> cache_;
  std::unordered_map<std::string, std::shared_ptr<Job>> jobs_;
};

}  // namespace mxedge::resolver
