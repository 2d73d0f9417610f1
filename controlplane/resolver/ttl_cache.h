// A TTL-aware LRU cache with a memory budget: values are immutable (shared_ptr<const V>), each entry
// expires at its own time, the least recently used entries go first when the budget is exceeded, and
// hits, misses, expiries and evictions are counted. Not thread-safe: the control plane resolves on
// one thread. Time is passed in, so tests control it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mxedge::resolver {

struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t expired = 0;  // misses that found an entry past its TTL
  uint64_t evictions = 0;
  uint64_t inserts = 0;
  size_t entries = 0;
  size_t bytes = 0;
  double hit_rate() const { return hits + misses ? static_cast<double>(hits) / static_cast<double>(hits + misses) : 0.0; }
};

template <typename V>
class TtlCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Ptr = std::shared_ptr<const V>;

  explicit TtlCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // The cached value, or nullptr when absent or expired (an expired entry is dropped).
  Ptr get(std::string_view key, Clock::time_point now) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++stats_.misses;
      return nullptr;
    }
    auto node = it->second;
    if (now >= node->expires) {
      ++stats_.misses;
      ++stats_.expired;
      erase(it);
      return nullptr;
    }
    ++stats_.hits;
    if (node != lru_.begin()) lru_.splice(lru_.begin(), lru_, node);
    return node->value;
  }

  // Stores `value` for `ttl` (0: not stored). `bytes` is the caller's estimate of its size.
  void put(std::string key, Ptr value, std::chrono::seconds ttl, size_t bytes, Clock::time_point now) {
    if (ttl.count() <= 0) return;
    put_until(std::move(key), std::move(value), now + ttl, bytes, now);
  }

  // Stores `value` until `expires` (not stored when that is not after `now`).
  void put_until(std::string key, Ptr value, Clock::time_point expires, size_t bytes, Clock::time_point now) {
    if (expires <= now || max_bytes_ == 0) return;
    bytes += key.size() + kOverhead;
    if (auto it = index_.find(key); it != index_.end()) erase(it);
    lru_.push_front(Node{std::move(key), std::move(value), expires, bytes});
    auto node = lru_.begin();
    index_.emplace(std::string_view(node->key), node);
    stats_.bytes += bytes;
    ++stats_.inserts;
    while (stats_.bytes > max_bytes_ && lru_.size() > 1) {
      auto last = std::prev(lru_.end());
      erase(index_.find(std::string_view(last->key)));
      ++stats_.evictions;
    }
  }

  void clear() {
    index_.clear();
    lru_.clear();
    stats_.bytes = 0;
  }

  CacheStats stats() const {
    CacheStats s = stats_;
    s.entries = index_.size();
    return s;
  }

 private:
  static constexpr size_t kOverhead = 96;  // list node, index slot, control block
  struct Node {
    std::string key;
    Ptr value;
    Clock::time_point expires;
    size_t bytes;
  };
  using List = std::list<Node>;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Index = std::unordered_map<std::string_view, typename List::iterator, Hash, std::equal_to<>>;

  void erase(typename Index::iterator it) {
    auto node = it->second;
    stats_.bytes -= node->bytes;
    index_.erase(it);
    lru_.erase(node);
  }

  size_t max_bytes_;
  List lru_;
  Index index_;
  CacheStats stats_;
};

}  // namespace mxedge::resolver
