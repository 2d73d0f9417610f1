// Unit tests for the data plane's policy store (dataplane/policy/policy_store.h): snapshots, deltas,
// version gaps, refused pushes, expiry, and the state file across restarts (including a torn one).
#include "dataplane/policy/policy_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "policy/policy_codec.h"

namespace mxedge::dataplane {
namespace {

namespace pb = mxedge::policy::v1;
constexpr int64_t kNow = 1'700'000'000;

pb::DestinationPolicy policy_for(const std::string& domain, int64_t expires, const std::string& address = "192.0.2.1") {
  policy::DestinationPolicy p;
  p.domain = domain;
  p.connector = "default";
  p.verdict = policy::PolicyVerdict::kDeliver;
  policy::HostPolicy h;
  h.name = "mx." + domain;
  h.addresses = {address};
  h.tls = policy::TlsRequirement::kMay;
  h.cleartext_allowed = true;
  p.hosts = {h};
  p.expires_at = expires;
  pb::DestinationPolicy m;
  policy::to_proto(p, &m);
  return m;
}

pb::ToDataplane snapshot(uint64_t version, std::vector<pb::DestinationPolicy> policies) {
  pb::ToDataplane m;
  m.mutable_snapshot()->set_version(version);
  m.mutable_snapshot()->set_nonce(version * 100);
  for (auto& p : policies) *m.mutable_snapshot()->add_policies() = p;
  return m;
}

pb::ToDataplane delta(uint64_t base, uint64_t version, std::vector<pb::DestinationPolicy> upserts, std::vector<std::string> removed = {}) {
  pb::ToDataplane m;
  m.mutable_delta()->set_base_version(base);
  m.mutable_delta()->set_version(version);
  m.mutable_delta()->set_nonce(version * 100 + 1);
  for (auto& p : upserts) *m.mutable_delta()->add_upserts() = p;
  for (auto& r : removed) m.mutable_delta()->add_removed(r);
  return m;
}

class PolicyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("mxedge-policy-store-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    file_ = (dir_ / "policy.state").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::string file_;
};

TEST_F(PolicyStoreTest, SnapshotThenDeltasAreAckedAndVisible) {
  PolicyStore store(file_);
  auto a = store.apply(snapshot(1, {policy_for("a.test", kNow + 60), policy_for("b.test", kNow + 60)}));
  ASSERT_TRUE(a.has_ack()) << a.DebugString();
  EXPECT_EQ(a.ack().version(), 1u);
  EXPECT_EQ(a.ack().nonce(), 100u);
  EXPECT_EQ(store.version(), 1u);
  auto before = store.current();  // a reader holding the old snapshot keeps it intact
  auto d = store.apply(delta(1, 2, {policy_for("c.test", kNow + 60), policy_for("a.test", kNow + 60, "192.0.2.9")}, {"b.test"}));
  ASSERT_TRUE(d.has_ack()) << d.DebugString();
  auto now = store.current();
  EXPECT_EQ(now->version, 2u);
  ASSERT_TRUE(now->find("c.test", kNow));
  EXPECT_EQ(now->find("a.test", kNow)->hosts[0].addresses[0], "192.0.2.9");
  EXPECT_FALSE(now->find("b.test", kNow));
  EXPECT_TRUE(before->find("b.test", kNow));
  EXPECT_EQ(before->find("a.test", kNow)->hosts[0].addresses[0], "192.0.2.1");
  EXPECT_EQ(store.counters().snapshots, 1u);
  EXPECT_EQ(store.counters().deltas, 1u);
}

TEST_F(PolicyStoreTest, DeltaForAnotherVersionAsksForASnapshot) {
  PolicyStore store(file_);
  ASSERT_TRUE(store.apply(snapshot(5, {policy_for("a.test", kNow + 60)})).has_ack());
  auto r = store.apply(delta(4, 6, {policy_for("b.test", kNow + 60)}));
  ASSERT_TRUE(r.has_nack());
  EXPECT_TRUE(r.nack().need_snapshot());
  EXPECT_NE(r.nack().error().find("version 5 is held"), std::string::npos) << r.nack().error();
  EXPECT_EQ(store.version(), 5u);
  EXPECT_FALSE(store.current()->find("b.test", kNow));
  auto back = store.apply(delta(5, 5, {}));
  ASSERT_TRUE(back.has_nack());
  EXPECT_NE(back.nack().error().find("does not follow"), std::string::npos);
}

TEST_F(PolicyStoreTest, OneBadPolicyRefusesTheWholePush) {
  PolicyStore store(file_);
  ASSERT_TRUE(store.apply(snapshot(1, {policy_for("a.test", kNow + 60)})).has_ack());
  auto bad = policy_for("b.test", kNow + 60);
  bad.mutable_hosts(0)->set_addresses(0, "not-an-address");
  auto r = store.apply(delta(1, 2, {policy_for("c.test", kNow + 60), bad}));
  ASSERT_TRUE(r.has_nack());
  EXPECT_FALSE(r.nack().need_snapshot());
  EXPECT_NE(r.nack().error().find("upserts[1]"), std::string::npos) << r.nack().error();
  EXPECT_FALSE(store.current()->find("c.test", kNow));  // nothing of it applied
  auto dup = store.apply(snapshot(3, {policy_for("a.test", kNow + 60), policy_for("a.test", kNow + 90)}));
  ASSERT_TRUE(dup.has_nack());
  EXPECT_NE(dup.nack().error().find("appears twice"), std::string::npos);
  EXPECT_TRUE(store.apply(pb::ToDataplane{}).has_nack());
  EXPECT_EQ(store.version(), 1u);
  EXPECT_EQ(store.counters().nacks, 3u);
}

TEST_F(PolicyStoreTest, ExpiredPoliciesAreNeverReturned) {
  PolicyStore store("");
  ASSERT_TRUE(store.apply(snapshot(1, {policy_for("a.test", kNow + 10)})).has_ack());
  EXPECT_TRUE(store.current()->find("a.test", kNow + 9));
  EXPECT_FALSE(store.current()->find("a.test", kNow + 10));
  EXPECT_FALSE(store.current()->find("other.test", kNow));
}

TEST_F(PolicyStoreTest, StateSurvivesARestart) {
  {
    PolicyStore store(file_);
    ASSERT_TRUE(store.apply(snapshot(1, {policy_for("a.test", kNow + 60)})).has_ack());
    ASSERT_TRUE(store.apply(delta(1, 2, {policy_for("b.test", kNow + 60)})).has_ack());
  }
  PolicyStore again(file_);
  std::string error;
  ASSERT_TRUE(again.load(&error)) << error;
  EXPECT_EQ(again.version(), 2u);
  EXPECT_TRUE(again.current()->find("a.test", kNow));
  EXPECT_TRUE(again.current()->find("b.test", kNow));
  // The restarted store continues from the persisted version.
  EXPECT_TRUE(again.apply(delta(2, 3, {}, {"a.test"})).has_ack());
  EXPECT_FALSE(std::filesystem::exists(file_ + ".tmp"));
}

TEST_F(PolicyStoreTest, MissingStateIsEmptyAndABrokenOneIsAClearError) {
  PolicyStore none(file_);
  std::string error;
  EXPECT_TRUE(none.load(&error));
  EXPECT_EQ(none.version(), 0u);
  {
    PolicyStore store(file_);
    ASSERT_TRUE(store.apply(snapshot(1, {policy_for("a.test", kNow + 60)})).has_ack());
  }
  const auto size = std::filesystem::file_size(file_);
  std::filesystem::resize_file(file_, size - 3);  // torn
  PolicyStore torn(file_);
  EXPECT_FALSE(torn.load(&error));
  EXPECT_NE(error.find("torn"), std::string::npos) << error;
  EXPECT_EQ(torn.version(), 0u);
  {
    std::fstream f(file_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x55');
  }
  std::filesystem::resize_file(file_, size);
  PolicyStore flipped(file_);
  EXPECT_FALSE(flipped.load(&error));
  EXPECT_NE(error.find("unusable"), std::string::npos) << error;
  std::ofstream(file_) << "hello";
  PolicyStore garbage(file_);
  EXPECT_FALSE(garbage.load(&error));
  EXPECT_NE(error.find("not a policy state file"), std::string::npos) << error;
}

TEST_F(PolicyStoreTest, UnwritableStateRefusesThePushAndKeepsTheOldState) {
  PolicyStore store((dir_ / "missing-dir" / "policy.state").string());
  auto r = store.apply(snapshot(1, {policy_for("a.test", kNow + 60)}));
  ASSERT_TRUE(r.has_nack());
  EXPECT_NE(r.nack().error().find("not applied"), std::string::npos) << r.nack().error();
  EXPECT_EQ(store.version(), 0u);
  EXPECT_EQ(store.counters().persist_failures, 1u);
}

}  // namespace
}  // namespace mxedge::dataplane
