#include "controlplane/mta_sts/policy_cache.h"

#include <sqlite3.h>

#include <algorithm>
#include <ctime>

namespace mxedge::mta_sts {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS policies (
  domain TEXT PRIMARY KEY,
  id TEXT NOT NULL,
  mode TEXT NOT NULL,
  max_age INTEGER NOT NULL,
  mx TEXT NOT NULL,
  fetched_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  txt_checked_at INTEGER NOT NULL,
  last_used_at INTEGER NOT NULL,
  backoff_until INTEGER NOT NULL,
  failures INTEGER NOT NULL,
  last_error TEXT NOT NULL
);
PRAGMA user_version = 1;
)sql";

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : "\n") + x;
  return s;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string::npos) nl = s.size();
    if (nl > start) out.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::string column_text(sqlite3_stmt* st, int i) {
  const unsigned char* t = sqlite3_column_text(st, i);
  return t ? reinterpret_cast<const char*>(t) : "";
}

}  // namespace

std::unique_ptr<PolicyCache> PolicyCache::open(StsClient& client, const CacheOptions& options, std::string* error) {
  std::unique_ptr<PolicyCache> c(new PolicyCache(client, options));
  if (!c->options_.now) c->options_.now = [] { return static_cast<int64_t>(::time(nullptr)); };
  if (sqlite3_open_v2(options.path.c_str(), &c->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    *error = "cannot open MTA-STS policy cache " + options.path + ": " + (c->db_ ? sqlite3_errmsg(c->db_) : "out of memory");
    return nullptr;
  }
  char* msg = nullptr;
  if (sqlite3_exec(c->db_, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr, &msg) != SQLITE_OK ||
      sqlite3_exec(c->db_, kSchema, nullptr, nullptr, &msg) != SQLITE_OK) {
    *error = "MTA-STS policy cache " + options.path + ": " + (msg ? msg : sqlite3_errmsg(c->db_));
    sqlite3_free(msg);
    return nullptr;
  }
  if (!c->load(error)) return nullptr;
  return c;
}

PolicyCache::~PolicyCache() {
  if (db_) {
    flush_usage();
    sqlite3_close(db_);
  }
}

bool PolicyCache::load(std::string* error) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT domain, id, mode, max_age, mx, fetched_at, expires_at, txt_checked_at, last_used_at, "
                         "backoff_until, failures, last_error FROM policies",
                         -1, &st, nullptr) != SQLITE_OK) {
    *error = std::string("MTA-STS policy cache: ") + sqlite3_errmsg(db_);
    return false;
  }
  while (sqlite3_step(st) == SQLITE_ROW) {
    auto p = std::make_shared<CachedPolicy>();
    p->domain = column_text(st, 0);
    p->id = column_text(st, 1);
    const std::string mode = column_text(st, 2);
    p->policy.mode = mode == "enforce" ? policy::StsMode::kEnforce : mode == "testing" ? policy::StsMode::kTesting : policy::StsMode::kNone;
    p->policy.max_age = static_cast<uint32_t>(sqlite3_column_int64(st, 3));
    p->policy.mx = split(column_text(st, 4));
    p->fetched_at = sqlite3_column_int64(st, 5);
    p->expires_at = sqlite3_column_int64(st, 6);
    p->txt_checked_at = sqlite3_column_int64(st, 7);
    p->last_used_at = sqlite3_column_int64(st, 8);
    p->backoff_until = sqlite3_column_int64(st, 9);
    p->failures = static_cast<uint32_t>(sqlite3_column_int64(st, 10));
    p->last_error = column_text(st, 11);
    entries_[p->domain] = std::move(p);
  }
  sqlite3_finalize(st);
  return true;
}

void PolicyCache::store(const CachedPolicy& p) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO policies VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", -1, &st, nullptr) != SQLITE_OK) return;
  const std::string mode(policy::to_string(p.policy.mode));
  const std::string mx = join(p.policy.mx);
  sqlite3_bind_text(st, 1, p.domain.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, p.id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, mode.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 4, p.policy.max_age);
  sqlite3_bind_text(st, 5, mx.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 6, p.fetched_at);
  sqlite3_bind_int64(st, 7, p.expires_at);
  sqlite3_bind_int64(st, 8, p.txt_checked_at);
  sqlite3_bind_int64(st, 9, p.last_used_at);
  sqlite3_bind_int64(st, 10, p.backoff_until);
  sqlite3_bind_int64(st, 11, p.failures);
  sqlite3_bind_text(st, 12, p.last_error.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_step(st);
  sqlite3_finalize(st);
}

void PolicyCache::erase_row(const std::string& domain) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "DELETE FROM policies WHERE domain = ?", -1, &st, nullptr) != SQLITE_OK) return;
  sqlite3_bind_text(st, 1, domain.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_step(st);
  sqlite3_finalize(st);
}

void PolicyCache::flush_usage() {
  sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "UPDATE policies SET last_used_at = ? WHERE domain = ? AND last_used_at < ?", -1, &st, nullptr) == SQLITE_OK) {
    for (const auto& [domain, p] : entries_) {
      sqlite3_bind_int64(st, 1, p->last_used_at);
      sqlite3_bind_text(st, 2, domain.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(st, 3, p->last_used_at);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    sqlite3_finalize(st);
  }
  sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
}

int64_t PolicyCache::backoff_for(uint32_t failures) const {
  int64_t b = options_.backoff_min.count();
  for (uint32_t i = 1; i < failures && b < options_.backoff_max.count(); ++i) b *= 2;
  return std::min<int64_t>(std::max<int64_t>(b, options_.backoff_min.count()), std::max(options_.backoff_max, options_.backoff_min).count());
}

StsResult PolicyCache::result_of(const CachedPolicy& p) const {
  StsResult r;
  r.kind = StsResult::kPolicy;
  r.domain = p.domain;
  r.id = p.id;
  r.policy = p.policy;
  return r;
}

std::shared_ptr<const CachedPolicy> PolicyCache::cached(std::string_view domain) {
  auto it = entries_.find(domain);  // heterogeneous: no string built on the warm path
  if (it == entries_.end()) return nullptr;
  const int64_t t = now();
  if (it->second->expires_at <= t) return nullptr;
  it->second->last_used_at = t;
  return it->second;
}

void PolicyCache::lookup(std::string_view domain_in, Callback callback) {
  ++counters_.lookups;
  const std::string domain = resolver::normalize_name(domain_in);
  const int64_t t = now();
  if (auto it = entries_.find(domain); it != entries_.end()) {
    CachedPolicy& e = *it->second;
    if (e.expires_at > t) {
      ++counters_.hits;
      e.last_used_at = t;
      refresh_if_due(domain, e, t, /*txt_recheck=*/true);
      callback(result_of(*entries_.at(domain)));
      return;
    }
    entries_.erase(it);  // expired: as if never cached
    erase_row(domain);
    ++counters_.evictions;
  }
  if (auto f = failed_.find(domain); f != failed_.end() && t < f->second.first) {
    StsResult r;
    r.kind = StsResult::kTempFail;
    r.domain = domain;
    r.reason = "policy fetch failed recently; next attempt in " + std::to_string(f->second.first - t) + " s";
    callback(r);
    return;
  }
  auto& waiting = fetching_[domain];
  waiting.push_back(std::move(callback));
  if (waiting.size() > 1) return;  // one discovery per domain at a time
  client_.lookup(domain, [this, domain](const StsResult& r) {
    const int64_t now_s = now();
    if (r.kind == StsResult::kPolicy) {
      ++counters_.fetches;
      auto p = std::make_shared<CachedPolicy>();
      p->domain = domain;
      p->id = r.id;
      p->policy = r.policy;
      p->fetched_at = p->txt_checked_at = p->last_used_at = now_s;
      p->expires_at = now_s + r.policy.max_age;
      if (r.policy.max_age > 0) {  // max_age 0: use once, do not keep
        store(*p);
        entries_[domain] = p;
      }
      failed_.erase(domain);
    } else if (r.kind == StsResult::kTempFail && !r.id.empty()) {
      ++counters_.fetch_failures;
      auto& f = failed_[domain];
      f.second += 1;
      f.first = now_s + backoff_for(f.second);
    }
    auto cbs = std::move(fetching_[domain]);
    fetching_.erase(domain);
    for (auto& cb : cbs) cb(r);
  });
}

bool PolicyCache::refresh_if_due(const std::string& domain, const CachedPolicy& e, int64_t t, bool txt_recheck) {
  if (refreshing_.count(domain) || t < e.backoff_until) return false;
  const int64_t margin = std::min<int64_t>(options_.refresh_before_expiry.count(), e.policy.max_age / 4);
  if (e.expires_at - t <= margin) {
    refresh(domain, true);
    return true;
  }
  if (txt_recheck && t - e.txt_checked_at >= options_.txt_recheck.count()) {
    refresh(domain, false);
    return true;
  }
  return false;
}

size_t PolicyCache::maintain() {
  sweep();
  const int64_t t = now();
  std::vector<std::pair<std::string, std::shared_ptr<CachedPolicy>>> due;
  for (const auto& [domain, e] : entries_) due.emplace_back(domain, e);
  size_t started = 0;
  for (const auto& [domain, e] : due) {
    // Every kept entry is in use (sweep() evicted the unused ones): refresh it before it expires.
    // The TXT id is re-checked only for entries used since their last check.
    if (refresh_if_due(domain, *e, t, /*txt_recheck=*/e->last_used_at > e->txt_checked_at)) ++started;
  }
  return started;
}

void PolicyCache::refresh(const std::string& domain, bool force_fetch) {
  refreshing_[domain] = true;
  ++counters_.txt_checks;
  client_.discover(domain, [this, domain, force_fetch](const Discovery& d) {
    auto it = entries_.find(domain);
    if (it == entries_.end()) {
      refreshing_.erase(domain);
      return;
    }
    auto next = std::make_shared<CachedPolicy>(*it->second);
    next->txt_checked_at = now();
    if (d.kind == Discovery::kId && (d.id != next->id || force_fetch)) {
      entries_[domain] = next;
      client_.fetch_policy(domain, d.id, [this, domain](const StsResult& r) {
        refreshing_.erase(domain);
        auto e = entries_.find(domain);
        if (e == entries_.end()) return;
        auto upd = std::make_shared<CachedPolicy>(*e->second);
        const int64_t t = now();
        if (r.kind == StsResult::kPolicy) {
          ++counters_.refreshes;
          upd->id = r.id;
          upd->policy = r.policy;
          upd->fetched_at = upd->txt_checked_at = t;
          upd->expires_at = t + r.policy.max_age;
          upd->failures = 0;
          upd->backoff_until = 0;
          upd->last_error.clear();
        } else {
          // Keep serving the cached policy; try again after the back-off.
          ++counters_.fetch_failures;
          upd->failures += 1;
          upd->backoff_until = t + backoff_for(upd->failures);
          upd->last_error = r.reason;
        }
        entries_[domain] = upd;
        store(*upd);
      });
      return;
    }
    // Same id, no TXT record any more, or the TXT lookup failed: the cached policy stays.
    refreshing_.erase(domain);
    entries_[domain] = next;
    store(*next);
  });
}

bool PolicyCache::purge(std::string_view domain_in) {
  const std::string domain = resolver::normalize_name(domain_in);
  failed_.erase(domain);
  const bool had = entries_.erase(domain) > 0;
  erase_row(domain);
  return had;
}

size_t PolicyCache::sweep() {
  const int64_t t = now();
  size_t n = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const CachedPolicy& p = *it->second;
    if (p.expires_at <= t || t - p.last_used_at >= options_.evict_unused.count()) {
      erase_row(it->first);
      it = entries_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  for (auto it = failed_.begin(); it != failed_.end();) it = t >= it->second.first ? failed_.erase(it) : std::next(it);
  counters_.evictions += n;
  flush_usage();
  return n;
}

}  // namespace mxedge::mta_sts
