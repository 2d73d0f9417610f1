#include "controlplane/resolver/ttl_cache.h"

#include <gtest/gtest.h>

namespace mxedge::resolver {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

TEST(TtlCacheTest, EntriesExpireAtTheirTtl) {
  TtlCache<int> cache(1 << 20);
  const auto t0 = Clock::time_point{} + seconds(1000);
  cache.put("a", std::make_shared<const int>(1), seconds(2), 8, t0);
  cache.put("b", std::make_shared<const int>(2), seconds(10), 8, t0);
  auto a = cache.get("a", t0 + seconds(1));
  ASSERT_TRUE(a);
  EXPECT_TRUE(cache.get("a", t0 + seconds(1)));
  EXPECT_FALSE(cache.get("a", t0 + seconds(2)));
  EXPECT_TRUE(cache.get("b", t0 + seconds(5)));
  const CacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 3u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.expired, 1u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_DOUBLE_EQ(s.hit_rate(), 0.75);
}

TEST(TtlCacheTest, ZeroTtlIsNotStored) {
  TtlCache<int> cache(1 << 20);
  cache.put("a", std::make_shared<const int>(1), seconds(0), 8, Clock::now());
  EXPECT_FALSE(cache.get("a", Clock::now()));
  EXPECT_EQ(cache.stats().inserts, 0u);
}

TEST(TtlCacheTest, LeastRecentlyUsedGoesFirstWhenOverBudget) {
  TtlCache<int> cache(3 * (100 + 96 + 1));
  const auto t = Clock::now();
  cache.put("a", std::make_shared<const int>(1), seconds(60), 100, t);
  cache.put("b", std::make_shared<const int>(2), seconds(60), 100, t);
  cache.put("c", std::make_shared<const int>(3), seconds(60), 100, t);
  ASSERT_TRUE(cache.get("a", t));  // a is now the most recent
  cache.put("d", std::make_shared<const int>(4), seconds(60), 100, t);
  EXPECT_FALSE(cache.get("b", t));
  EXPECT_TRUE(cache.get("a", t));
  EXPECT_TRUE(cache.get("c", t));
  EXPECT_TRUE(cache.get("d", t));
  EXPECT_EQ(cache.stats().evictions, 1u);
  EXPECT_LE(cache.stats().bytes, 3u * (100 + 96 + 1));
}

TEST(TtlCacheTest, ReplacingAKeyKeepsOneEntry) {
  TtlCache<int> cache(1 << 20);
  const auto t = Clock::now();
  cache.put("a", std::make_shared<const int>(1), seconds(60), 10, t);
  cache.put("a", std::make_shared<const int>(2), seconds(60), 10, t);
  auto a = cache.get("a", t);
  ASSERT_TRUE(a);
  EXPECT_TRUE(*a == 2);
  EXPECT_EQ(cache.stats().entries, 1u);
}

}  // namespace
}  // namespace mxedge::resolver
