// Unit tests for TLS-RPT outcome recording (dataplane/trace/tls_outcomes.h): counting within a turn,
// adding across flushes and workers, UTC days, retention.
#include "dataplane/trace/tls_outcomes.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace mxedge::trace {
namespace {

class TlsOutcomesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("mxedge-tlsrpt-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static TlsOutcome success(int64_t day, const std::string& domain) {
    TlsOutcome o;
    o.day = day;
    o.policy_type = "tlsa";
    o.policy_domain = domain;
    o.policy_strings = "3 1 1 00";
    return o;
  }
  static TlsOutcome failure(int64_t day, const std::string& domain, const std::string& type, const std::string& ip) {
    TlsOutcome o = success(day, domain);
    o.result_type = type;
    o.receiving_mx_hostname = "mx." + domain;
    o.receiving_ip = ip;
    o.sending_mta_ip = "192.0.2.1";
    return o;
  }
  std::filesystem::path dir_;
};

TEST_F(TlsOutcomesTest, UtcDayIsTheStartOfTheDay) {
  EXPECT_EQ(TlsOutcomeStore::utc_day(1459468800), 1459468800);  // 2016-04-01T00:00:00Z
  EXPECT_EQ(TlsOutcomeStore::utc_day(1459468800 + 86399), 1459468800);
  EXPECT_EQ(TlsOutcomeStore::utc_day(1459468800 + 86400), 1459468800 + 86400);
}

TEST_F(TlsOutcomesTest, SessionsAreCountedPerKeyAndSummedOverFlushesAndWorkers) {
  const int64_t day = 1459468800;
  std::string error;
  auto w0 = TlsOutcomeStore::open(TlsOutcomeStore::path_for(dir_.string(), 0), 14 * 86400, &error);
  auto w1 = TlsOutcomeStore::open(TlsOutcomeStore::path_for(dir_.string(), 1), 14 * 86400, &error);
  ASSERT_TRUE(w0 && w1) << error;
  w0->record(success(day, "a.test"));
  w0->record(success(day, "a.test"));
  w0->record(failure(day, "a.test", "validation-failure", "203.0.113.1"));
  w0->record(failure(day, "a.test", "validation-failure", "203.0.113.2"));  // another receiving IP: another row
  EXPECT_EQ(w0->pending(), 3u);
  const auto dbs = TlsOutcomeStore::databases(dir_.string());
  ASSERT_EQ(dbs.size(), 2u);
  EXPECT_TRUE(TlsOutcomeStore::query(dbs, day, day, &error).empty());  // nothing until flushed
  w0->flush();
  w0->record(success(day, "a.test"));
  w0->flush();
  w1->record(success(day, "a.test"));
  w1->record(success(day + 86400, "a.test"));  // the next UTC day
  w1->flush();
  auto rows = TlsOutcomeStore::query(dbs, day, day, &error);
  ASSERT_EQ(rows.size(), 3u) << error;
  uint64_t ok = 0, failed = 0;
  for (const auto& r : rows) (r.result_type.empty() ? ok : failed) += r.sessions;
  EXPECT_EQ(ok, 4u);
  EXPECT_EQ(failed, 2u);
  EXPECT_EQ(TlsOutcomeStore::query(dbs, day, day + 86400, &error).size(), 4u);
}

TEST_F(TlsOutcomesTest, RetentionDeletesOldDays) {
  const int64_t day = 1459468800;
  std::string error;
  auto t = TlsOutcomeStore::open(TlsOutcomeStore::path_for(dir_.string(), 0), 2 * 86400, &error);
  ASSERT_TRUE(t) << error;
  t->record(success(day, "old.test"));
  t->record(success(day + 5 * 86400, "new.test"));
  t->flush();
  EXPECT_EQ(t->expire(day + 5 * 86400 + 10), 1u);
  auto rows = TlsOutcomeStore::query(TlsOutcomeStore::databases(dir_.string()), 0, day + 10 * 86400, &error);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].policy_domain, "new.test");
}

}  // namespace
}  // namespace mxedge::trace
