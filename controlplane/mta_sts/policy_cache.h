// The MTA-STS policy cache (RFC 8461 §3.3, §5.1): persistent in SQLite (WAL; survives restarts),
// with every entry also in memory for the delivery path's lookups.
//
// Rules:
// - a policy is kept for max_age after the last successful fetch;
// - the TXT id is re-checked at most every `txt_recheck` while the policy is in use, and the policy
//   is re-fetched only when the id changed — or when it is close to expiry (refresh before expiry);
// - a vanished TXT record (or a failed TXT lookup) does not evict a cached policy;
// - a failed fetch keeps serving the unexpired cached policy and backs off (>= 5 minutes, doubling
//   per consecutive failure up to `backoff_max`) before that domain is fetched again;
// - entries unused for `evict_unused` are evicted; an operator can purge one domain.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "controlplane/mta_sts/sts_client.h"
#include "policy/mta_sts.h"

struct sqlite3;

namespace mxedge::mta_sts {

struct CacheOptions {
  std::string path;  // SQLite database file
  std::chrono::seconds txt_recheck{300};
  std::chrono::seconds backoff_min{300};
  std::chrono::seconds backoff_max{3600};
  // Re-fetch a policy in use when less than this (or a quarter of its max_age, if smaller) is left.
  std::chrono::seconds refresh_before_expiry{86400};
  std::chrono::seconds evict_unused{30 * 86400};
  // Wall clock in seconds since the epoch (tests move it).
  std::function<int64_t()> now;
};

struct CachedPolicy {
  std::string domain;
  std::string id;
  policy::StsPolicy policy;
  int64_t fetched_at = 0;
  int64_t expires_at = 0;
  int64_t txt_checked_at = 0;
  int64_t last_used_at = 0;
  int64_t backoff_until = 0;
  uint32_t failures = 0;
  std::string last_error;
};

struct CacheCounters {
  uint64_t lookups = 0, hits = 0, fetches = 0, fetch_failures = 0, txt_checks = 0, refreshes = 0, evictions = 0;
};

class PolicyCache {
 public:
  using Callback = std::function<void(const StsResult&)>;

  // nullptr with `error` set when the database cannot be opened or created.
  static std::unique_ptr<PolicyCache> open(StsClient& client, const CacheOptions& options, std::string* error);
  ~PolicyCache();

  // The policy for `domain`: from the cache when it has an unexpired one (a background TXT re-check
  // or refresh may start), otherwise discovered and fetched. The callback may run before lookup()
  // returns (cache hit).
  void lookup(std::string_view domain, Callback callback);

  // The cached, unexpired policy only; nullptr otherwise. No I/O: the warm path.
  std::shared_ptr<const CachedPolicy> cached(std::string_view domain);

  // Removes `domain` from memory and disk. True when it was cached.
  bool purge(std::string_view domain);
  // Evicts entries unused for evict_unused and expired ones; returns how many.
  size_t sweep();

  // The daemon's periodic work: sweep(), then start the refresh of every kept policy that is close
  // to expiry (and a TXT re-check of those used since their last one) without waiting for a lookup,
  // so that policies in use never lapse. Returns how many refreshes started.
  size_t maintain();
  // True while a background re-check or refresh is in flight.
  bool refreshing() const { return !refreshing_.empty(); }

  size_t size() const { return entries_.size(); }
  const CacheCounters& counters() const { return counters_; }
  // Writes last-used times kept in memory (done by sweep() and on destruction).
  void flush_usage();

 private:
  PolicyCache(StsClient& client, const CacheOptions& options) : client_(client), options_(options) {}
  bool load(std::string* error);
  void store(const CachedPolicy& p);
  void erase_row(const std::string& domain);
  void refresh(const std::string& domain, bool force_fetch);
  bool refresh_if_due(const std::string& domain, const CachedPolicy& e, int64_t t, bool txt_recheck);
  void on_fetched(const std::string& domain, const StsResult& r, bool had_entry);
  int64_t now() const { return options_.now(); }
  int64_t backoff_for(uint32_t failures) const;
  StsResult result_of(const CachedPolicy& p) const;

  StsClient& client_;
  CacheOptions options_;
  sqlite3* db_ = nullptr;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::shared_ptr<CachedPolicy>, Hash, std::equal_to<>> entries_;
  // Failed first fetches (no cached policy): back-off state only, not persisted.
  std::unordered_map<std::string, std::pair<int64_t, uint32_t>> failed_;
  std::unordered_map<std::string, bool> refreshing_;
  std::unordered_map<std::string, std::vector<Callback>> fetching_;
  CacheCounters counters_;
};

}  // namespace mxedge::mta_sts
