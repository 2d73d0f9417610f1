// The per-source SYN token bucket of bpf/xdp_smtp.bpf.c through BPF_PROG_TEST_RUN, on the test clock
// (a load-time knob: the program reads the time the test sets) so refill is exact; one test on the
// real clock.
#include <linux/bpf.h>

#include <chrono>
#include <thread>

#include "tests/bpf/xdp_fixture.h"

namespace mxedge::bpftest {
namespace {

constexpr uint64_t kMs = 1000000;
constexpr uint64_t kT0 = 1000000 * kMs;  // an arbitrary start on the test clock

class XdpRateLimitTest : public XdpFixture {
 protected:
  // 10 SYNs per second (one per 100 ms) with a burst of 3.
  xdp::XdpConfig config() override {
    xdp::XdpConfig c = XdpFixture::config();
    c.syn_rate = 10;
    c.syn_burst = 3;
    return c;
  }
  void SetUp() override {
    XdpFixture::SetUp();
    now_ = kT0;
    prog_.set_test_clock(now_);
  }
  void advance(uint64_t ns) {
    now_ += ns;
    prog_.set_test_clock(now_);
  }
  std::vector<uint8_t> syn(const char* src, uint16_t sport = 40000) {
    return PacketBuilder().ipv4(src, kLocal4).tcp(sport, 25, kSyn).bytes();
  }
  std::vector<uint8_t> syn6(const char* src, uint16_t sport = 40000) {
    return PacketBuilder().ipv6(src, kLocal6).tcp(sport, 25, kSyn).bytes();
  }
  void expect_admitted(const std::vector<uint8_t>& frame) { expect(frame, kSteered, MXEDGE_CTR_STEERED_WORKER0); }
  void expect_limited(const std::vector<uint8_t>& frame) { expect(frame, XDP_DROP, MXEDGE_CTR_DROP_RATE_LIMIT); }

  uint64_t now_ = 0;
};

TEST_F(XdpRateLimitTest, BurstThenOnePerInterval) {
  // New connections from one source, each from another port: the bucket is per source address.
  for (uint16_t port = 1; port <= 3; ++port) expect_admitted(syn(kPeer4, port));
  expect_limited(syn(kPeer4, 4));
  expect_limited(syn(kPeer4, 5));
  advance(99 * kMs);
  expect_limited(syn(kPeer4, 6));
  advance(1 * kMs);  // 100 ms: one token
  expect_admitted(syn(kPeer4, 7));
  expect_limited(syn(kPeer4, 8));
  advance(10000 * kMs);  // a long pause refills the bucket to the burst, not beyond
  for (uint16_t port = 9; port <= 11; ++port) expect_admitted(syn(kPeer4, port));
  expect_limited(syn(kPeer4, 12));
}

TEST_F(XdpRateLimitTest, EstablishedFlowsAreNeverLimited) {
  for (uint16_t port = 1; port <= 4; ++port) (void)run(syn(kPeer4, port));
  expect_limited(syn(kPeer4, 5));
  // The source's bucket is empty; everything that is not a bare SYN still goes through.
  const uint8_t flags[] = {kAck, kAck | kPsh, kAck | kFin, kRst, kRst | kAck, kSyn | kAck, 0};
  for (int round = 0; round < 20; ++round) {
    for (uint8_t f : flags) {
      expect(PacketBuilder().ipv4(kPeer4, kLocal4).tcp(1, 25, f).payload(10).bytes(), kSteered,
             MXEDGE_CTR_STEERED_WORKER0);
    }
  }
}

TEST_F(XdpRateLimitTest, BucketsPerIpv4HostAndIpv6Slash64) {
  for (int i = 0; i < 3; ++i) (void)run(syn(kPeer4));
  expect_limited(syn(kPeer4));
  expect_admitted(syn("203.0.113.6"));  // the next IPv4 address has its own bucket

  for (int i = 0; i < 3; ++i) (void)run(syn6("2001:db8:2::5"));
  expect_limited(syn6("2001:db8:2::5"));
  expect_limited(syn6("2001:db8:2::ffff:1"));  // same /64: same bucket
  expect_limited(syn6("2001:db8:2:0:8000::1"));
  expect_admitted(syn6("2001:db8:2:1::5"));  // next /64
}

TEST_F(XdpRateLimitTest, AllowlistedSourcesAreNotLimited) {
  for (int i = 0; i < 10; ++i) expect(syn(kAllowed4), kSteered, MXEDGE_CTR_STEERED_WORKER0, /*allowlisted=*/true);
  for (int i = 0; i < 10; ++i) expect(syn6(kAllowed6), kSteered, MXEDGE_CTR_STEERED_WORKER0, /*allowlisted=*/true);
}

TEST_F(XdpRateLimitTest, BlocklistComesFirst) {
  for (int i = 0; i < 5; ++i) expect(syn(kBlocked4), XDP_DROP, MXEDGE_CTR_DROP_BLOCKLIST);
}

// STYLE.md: with repeat > 1 each run sees the state the previous run left. One test run of a SYN
// with repeat 5 admits 3 and limits 2; the reported verdict is the last run's.
TEST_F(XdpRateLimitTest, RepeatedRunsShareTheBucket) {
  xdp::XdpCounters before = counters();
  EXPECT_EQ(run(syn(kPeer4), 5), static_cast<uint32_t>(XDP_DROP));
  xdp::XdpCounters after = counters();
  EXPECT_EQ(after.steered(0) - before.steered(0), 3u);
  EXPECT_EQ(after.packets(MXEDGE_CTR_DROP_RATE_LIMIT) - before.packets(MXEDGE_CTR_DROP_RATE_LIMIT), 2u);
}

TEST_F(XdpRateLimitTest, SettingsChangeWhileRunning) {
  MXEDGE_ASSERT_OK(prog_.set_rate_limit(0, 0));  // off
  for (int i = 0; i < 20; ++i) expect_admitted(syn(kPeer4));
  MXEDGE_ASSERT_OK(prog_.set_rate_limit(1, 1));  // one per second, no burst
  expect_admitted(syn("203.0.113.77"));
  expect_limited(syn("203.0.113.77"));
  advance(1000 * kMs);
  expect_admitted(syn("203.0.113.77"));
}

// The new-source budget (2 per second, burst 3, per CPU): SYNs from sources without a bucket draw on
// it; past it they are dropped as drop_new_source and create no bucket, so a source known before
// keeps its own budget and a spoofed flood cannot fill the table faster than the budget. The budget
// is per CPU, so the test stays on one.
TEST_F(XdpRateLimitTest, NewSourcesShareABudgetKnownSourcesKeepTheirs) {
  ASSERT_TRUE(pin_to_cpu(0));
  MXEDGE_ASSERT_OK(prog_.set_new_source_limit(2, 3));
  expect_admitted(syn(kPeer4, 1));  // known from here on: it has a bucket
  expect_admitted(syn("198.18.0.1"));
  expect_admitted(syn6("2001:db8:77::1"));  // both families share the budget
  for (const char* spoofed : {"198.18.0.2", "198.18.0.3", "198.18.0.4"})
    expect(syn(spoofed), XDP_DROP, MXEDGE_CTR_DROP_NEW_SOURCE);
  expect(syn6("2001:db8:78::1"), XDP_DROP, MXEDGE_CTR_DROP_NEW_SOURCE);
  // The known sources still have their own buckets (burst 3: two SYNs left for kPeer4).
  expect_admitted(syn(kPeer4, 2));
  expect_admitted(syn("198.18.0.1", 2));
  // A dropped new source got no bucket: it is still new, and still over the budget.
  expect(syn("198.18.0.2"), XDP_DROP, MXEDGE_CTR_DROP_NEW_SOURCE);
  // Established traffic from a source the budget refused is not limited at all.
  expect(PacketBuilder().ipv4("198.18.0.3", kLocal4).tcp(5, 25, kAck).bytes(), kSteered, MXEDGE_CTR_STEERED_WORKER0);
  // Allowlisted sources never touch the budget.
  expect(syn(kAllowed4), kSteered, MXEDGE_CTR_STEERED_WORKER0, /*allowlisted=*/true);
  // Half a second refills one new source.
  advance(500 * kMs);
  expect_admitted(syn("198.18.0.2"));
  expect(syn("198.18.0.5"), XDP_DROP, MXEDGE_CTR_DROP_NEW_SOURCE);
  // Off again: every new source is admitted.
  MXEDGE_ASSERT_OK(prog_.set_new_source_limit(0, 0));
  for (const char* spoofed : {"198.18.0.5", "198.18.0.6", "198.18.0.7", "198.18.0.8"}) expect_admitted(syn(spoofed));
  EXPECT_FALSE(prog_.set_new_source_limit(5, 0).ok());
}

// On the real clock (bpf_ktime_get_ns): 10 per second, burst 1. Whether the second SYN comes within
// 100 ms is up to the scheduler, so that case is checked only when it did.
TEST(XdpRateLimitRealClockTest, RefillsWithTime) {
  ASSERT_TRUE(pin_to_cpu(0));
  xdp::XdpProgram prog;
  xdp::XdpProgramOptions options;
  options.pin_dir = "";
  MXEDGE_ASSERT_OK(prog.open(options));
  MXEDGE_ASSERT_OK(prog.load());
  xdp::XdpConfig c = base_config();
  c.syn_rate = 10;
  c.syn_burst = 1;
  MXEDGE_ASSERT_OK(prog.apply(c));
  auto frame = PacketBuilder().ipv4(kPeer4, kLocal4).tcp(40000, 25, kSyn).bytes();

  auto t0 = std::chrono::steady_clock::now();
  RunResult first = test_run(prog.prog_fd(), frame);
  RunResult second = test_run(prog.prog_fd(), frame);
  auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(first.err, 0);
  ASSERT_EQ(second.err, 0);
  EXPECT_NE(first.retval, static_cast<uint32_t>(XDP_DROP));
  if (elapsed < std::chrono::milliseconds(90)) {
    EXPECT_EQ(second.retval, static_cast<uint32_t>(XDP_DROP));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_NE(test_run(prog.prog_fd(), frame).retval, static_cast<uint32_t>(XDP_DROP));
}

}  // namespace
}  // namespace mxedge::bpftest
