// Unit tests for the message trace store (dataplane/trace/trace_store.h): buffered writes, queries
// across worker databases, retention.
#include "dataplane/trace/trace_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace mxedge::trace {
namespace {

class TraceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("mxedge-trace-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  TraceEvent ev(int64_t ts, const std::string& qid, const std::string& what, const std::string& domain) {
    TraceEvent e;
    e.ts_us = ts;
    e.qid = qid;
    e.event = what;
    e.domain = domain;
    e.host = "mx." + domain;
    e.address = "192.0.2.1";
    e.requirement = "dane";
    e.verification = "dane";
    e.dane_usage = 3;
    e.dane_depth = 0;
    e.detail = "250 ok";
    return e;
  }
  std::filesystem::path dir_;
};

TEST_F(TraceStoreTest, EventsAreWrittenAtFlushAndFoundAcrossWorkers) {
  std::string error;
  auto w0 = TraceStore::open(TraceStore::path_for(dir_.string(), 0), 3600, 0, &error);
  auto w1 = TraceStore::open(TraceStore::path_for(dir_.string(), 1), 3600, 1, &error);
  ASSERT_TRUE(w0 && w1) << error;
  w0->add(ev(1000, "Q1", "attempt_failed", "a.test"));
  w1->add(ev(2000, "Q1", "delivered", "a.test"));
  w0->add(ev(3000, "Q2", "deferred", "b.test"));
  const auto dbs = TraceStore::databases(dir_.string());
  ASSERT_EQ(dbs.size(), 2u);
  EXPECT_TRUE(TraceStore::query(dbs, TraceQuery{"Q1", "", 0, 100, ""}, &error).empty());  // nothing until flushed
  w0->flush();
  w1->flush();
  EXPECT_EQ(w0->pending(), 0u);
  auto q1 = TraceStore::query(dbs, TraceQuery{"Q1", "", 0, 100, ""}, &error);
  ASSERT_EQ(q1.size(), 2u) << error;
  EXPECT_EQ(q1[0].event, "attempt_failed");  // oldest first, merged over both workers
  EXPECT_EQ(q1[1].event, "delivered");
  EXPECT_EQ(q1[1].worker, 1u);
  EXPECT_EQ(q1[1].dane_usage, 3);
  EXPECT_EQ(TraceStore::query(dbs, TraceQuery{"", "b.test", 0, 100, ""}, &error).size(), 1u);
  EXPECT_EQ(TraceStore::query(dbs, TraceQuery{"", "", 1500, 100, ""}, &error).size(), 2u);
  EXPECT_EQ(TraceStore::query(dbs, TraceQuery{"", "", 0, 1, ""}, &error).size(), 1u);
}

TEST_F(TraceStoreTest, EventsAreFoundByRecipient) {
  std::string error;
  auto t = TraceStore::open(TraceStore::path_for(dir_.string(), 0), 3600, 0, &error);
  ASSERT_TRUE(t) << error;
  auto a = ev(1000, "Q1", "delivered", "a.test");
  a.recipients = {"alice@a.test", "bob@a.test"};
  auto b = ev(2000, "Q2", "deferred", "a.test");
  b.recipients = {"bob2@a.test"};
  t->add(a);
  t->add(b);
  t->add(ev(3000, "Q3", "policy_wait", "a.test"));  // no job: no recipients
  t->flush();
  const auto dbs = TraceStore::databases(dir_.string());
  TraceQuery q;
  q.recipient = "BOB@a.test";  // case-insensitive, and never a substring of another address
  auto found = TraceStore::query(dbs, q, &error);
  ASSERT_EQ(found.size(), 1u) << error;
  EXPECT_EQ(found[0].qid, "Q1");
  EXPECT_EQ(found[0].recipients, (std::vector<std::string>{"alice@a.test", "bob@a.test"}));
  q.recipient = "ob@a.test";
  EXPECT_TRUE(TraceStore::query(dbs, q, &error).empty());
  EXPECT_EQ(TraceStore::query(dbs, TraceQuery{}, &error).size(), 3u);
}

TEST_F(TraceStoreTest, RetentionDeletesOldEvents) {
  std::string error;
  auto t = TraceStore::open(TraceStore::path_for(dir_.string(), 0), 10, 0, &error);
  ASSERT_TRUE(t) << error;
  t->add(ev(1'000'000, "OLD", "delivered", "a.test"));
  t->add(ev(20'000'000, "NEW", "delivered", "a.test"));
  t->flush();
  EXPECT_EQ(t->expire(25'000'000), 1u);  // older than 10 s at t = 25 s
  auto all = TraceStore::query(TraceStore::databases(dir_.string()), TraceQuery{}, &error);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].qid, "NEW");
}

TEST_F(TraceStoreTest, UnusablePathsAreClearErrors) {
  std::string error;
  EXPECT_FALSE(TraceStore::open((dir_ / "missing" / "trace-w0.db").string(), 10, 0, &error));
  EXPECT_NE(error.find("cannot open trace store"), std::string::npos) << error;
  std::filesystem::create_directories(dir_ / "q");
  std::FILE* f = std::fopen((dir_ / "q" / "trace-w0.db").c_str(), "w");
  std::fputs("not a database at all, not a database at all, not a database at all, not a database", f);
  std::fclose(f);
  error.clear();
  EXPECT_TRUE(TraceStore::query(TraceStore::databases((dir_ / "q").string()), TraceQuery{}, &error).empty());
  EXPECT_FALSE(error.empty());
}

}  // namespace
}  // namespace mxedge::trace
