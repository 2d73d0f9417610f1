// Differential test of the two fast paths: for one corpus of frames, the XDP program (through
// BPF_PROG_TEST_RUN) and the DPDK fast path (the same bpf/classifier.h compiled as user-space C over
// rte_lpm / rte_lpm6 / rte_hash tables) must give identical verdicts: the same exclusive counter,
// the same allowlisted mark and, for steered frames, the same worker. The corpus: the fixture's
// frames, random well-formed frames (tests/bpf/frame_generator.h), damaged copies of them, and
// every truncation of a few frames. Both run the same config (lists, local addresses, two workers,
// a SYN rate limit) on the same test clock, in the same order, so the SYN buckets agree too.
//
// Also: API changes made while frames flow reach both paths the same way (a prefix added and
// removed, the rate limit changed, steering off).
//
// The seed is printed; MXEDGE_BPF_SEED=<n> replays a run, MXEDGE_BPF_FRAMES=<n> changes its length.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "dataplane/dpdk/dpdk_fast_path.h"
#include "tests/bpf/frame_generator.h"
#include "tests/bpf/xdp_fixture.h"
#include "tests/dpdk/dpdk_test_env.h"

namespace mxedge::bpftest {
namespace {

struct Observed {
  unsigned counter = 0;
  bool allowlisted = false;
  bool operator==(const Observed&) const = default;
};

std::string describe(const Observed& o) {
  return xdp::counter_name(o.counter) + (o.allowlisted ? " +allowlisted" : "");
}

std::string hex(const std::vector<uint8_t>& f) {
  std::string out;
  char b[4];
  for (uint8_t c : f) {
    std::snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

class DifferentialTest : public XdpFixture {
 protected:
  static void SetUpTestSuite() { ASSERT_TRUE(dpdktest::start_eal().ok()); }

  // The random tests' config plus a new-source budget (2 per second per CPU, burst 5), which the
  // random corpus's 25 peer sources exhaust: each side keeps it per CPU / per lcore, so the XDP side
  // stays on CPU 0.
  xdp::XdpConfig config() override {
    xdp::XdpConfig c = random_config(XdpFixture::config());
    c.new_source_syn_rate = 2;
    c.new_source_syn_burst = 5;
    return c;
  }

  void SetUp() override {
    ASSERT_TRUE(pin_to_cpu(0));
    XdpFixture::SetUp();
    dpdk::DpdkOptions options;
    options.test_clock = true;
    options.lcores = 1;
    options.flow_hash_seed = 0x6d786467;  // XdpProgramOptions' default, which the fixture uses
    MXEDGE_ASSERT_OK(dpdk_.open(options));
    MXEDGE_ASSERT_OK(dpdk_.apply(config()));
  }

  void set_clock(uint64_t ns) {
    prog_.set_test_clock(ns);
    dpdk_.set_test_clock(ns);
  }

  Observed xdp_side(const std::vector<uint8_t>& frame) {
    const xdp::XdpCounters before = counters();
    run(frame);
    const xdp::XdpCounters after = counters();
    Observed o;
    unsigned moved = 0;
    for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i) {
      if (after.packets(i) == before.packets(i)) continue;
      if (i == MXEDGE_CTR_ALLOWLISTED) {
        o.allowlisted = true;
      } else {
        o.counter = i;
        ++moved;
      }
    }
    EXPECT_EQ(moved, 1u) << "XDP moved " << moved << " exclusive counters";
    return o;
  }

  Observed dpdk_side(const std::vector<uint8_t>& frame, mxedge_verdict* v) {
    dpdk_.classify(0, frame.data(), static_cast<uint32_t>(frame.size()), v);
    return Observed{v->counter, v->allowlisted != 0};
  }

  // Runs one frame through both and compares; returns false (once reported) on a difference.
  bool same(const std::vector<uint8_t>& frame, const char* what) {
    mxedge_verdict v{};
    const Observed x = xdp_side(frame);
    const Observed d = dpdk_side(frame, &v);
    ++compared_;
    if (x == d) {
      if (v.action == MXEDGE_ACT_STEER) {
        // The steered counter is the worker: the same on both sides by construction of the counter.
        EXPECT_EQ(v.counter, MXEDGE_CTR_STEERED_WORKER0 + v.worker);
        ++steered_;
      }
      if (v.action == MXEDGE_ACT_DROP) ++dropped_;
      return true;
    }
    ADD_FAILURE() << what << ": XDP " << describe(x) << ", DPDK " << describe(d) << "\nframe " << hex(frame);
    return false;
  }

  dpdk::DpdkFastPath dpdk_;
  uint64_t compared_ = 0, steered_ = 0, dropped_ = 0;
};

TEST_F(DifferentialTest, FixtureFramesAndEveryTruncation) {
  set_clock(1000000000000ull);
  std::vector<std::vector<uint8_t>> frames = {
      PacketBuilder().ipv4(kPeer4, kLocal4).tcp(40000, 25, kSyn).bytes(),
      PacketBuilder().ipv4(kPeer4, kLocal4).tcp(40001, 465, kAck | kPsh).payload(100).bytes(),
      PacketBuilder().ipv4(kPeer4, kOther4).tcp(40002, 25, kSyn).bytes(),
      PacketBuilder().ipv4(kBlocked4, kLocal4).tcp(40003, 25, kSyn).bytes(),
      PacketBuilder().ipv4(kAllowed4, kLocal4).tcp(40004, 587, kSyn).bytes(),
      PacketBuilder().ipv6(kPeer6, kLocal6).tcp(40005, 25, kSyn).bytes(),
      PacketBuilder().ipv6(kBlocked6, kLocal6).tcp(40006, 25, kAck).bytes(),
      PacketBuilder().ipv6(kAllowed6, kLocal6).tcp(40007, 25, kSyn).bytes(),
      PacketBuilder().ipv6(kPeer6, kOther6).tcp(40008, 25, kSyn).bytes(),
      PacketBuilder().vlan(0x88a8, 10).vlan(0x8100, 20).ipv4(kPeer4, kLocal4).tcp(40009, 25, kAck).bytes(),
      PacketBuilder().ipv6(kPeer6, kLocal6).ipv6_ext(IPPROTO_HOPOPTS, 8).ipv6_ext(IPPROTO_DSTOPTS, 16).tcp(40010, 25, kAck).bytes(),
      PacketBuilder().ipv4(kPeer4, kLocal4).fragment(0, true, 24).tcp(40011, 25, kSyn).payload(64).bytes(),
      PacketBuilder().ipv4(kPeer4, kLocal4).fragment(16, false).tcp(40012, 25, kSyn).payload(64).bytes(),
      PacketBuilder().ipv4(kPeer4, kLocal4).udp(5353, 25).payload(20).bytes(),
      PacketBuilder().ethertype(0x0806).payload(28).bytes(),
  };
  for (const auto& f : frames) same(f, "fixture frame");
  // Every prefix of every frame: the malformed rules at each header boundary.
  for (const auto& f : frames) {
    for (size_t len = 0; len < f.size(); ++len) {
      if (!same(std::vector<uint8_t>(f.begin(), f.begin() + static_cast<long>(len)), "truncated frame")) return;
    }
  }
  EXPECT_GT(steered_, 0u);
  EXPECT_GT(dropped_, 0u);
}

TEST_F(DifferentialTest, RandomAndDamagedFramesGiveIdenticalVerdicts) {
  const uint64_t seed = env_or("MXEDGE_BPF_SEED", std::random_device{}());
  const uint64_t frames = env_or("MXEDGE_BPF_FRAMES", 20000);
  std::printf("MXEDGE_BPF_SEED=%llu MXEDGE_BPF_FRAMES=%llu\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(frames));
  Generator gen(seed);
  uint64_t clock = 1000000000000ull;
  set_clock(clock);
  uint64_t rate_drops = 0, new_source_drops = 0;
  for (uint64_t i = 0; i < frames; ++i) {
    if (gen.uniform(0, 9) == 0) {
      clock += static_cast<uint64_t>(gen.uniform(0, 2000)) * 1000;  // up to 2 ms
      set_clock(clock);
    }
    Expectation want;
    std::vector<uint8_t> frame = gen.frame(&want);
    if (gen.coin()) frame = gen.mutate(frame);
    mxedge_verdict v{};
    const Observed x = xdp_side(frame);
    const Observed d = dpdk_side(frame, &v);
    ++compared_;
    if (d.counter == MXEDGE_CTR_DROP_RATE_LIMIT) ++rate_drops;
    if (d.counter == MXEDGE_CTR_DROP_NEW_SOURCE) ++new_source_drops;
    if (!(x == d)) {
      FAIL() << "frame " << i << " (seed " << seed << "): XDP " << describe(x) << ", DPDK " << describe(d) << "\nframe "
             << hex(frame);
    }
  }
  std::printf("compared %llu frames, %llu dropped by the rate limit and %llu by the new-source budget on both sides\n",
              static_cast<unsigned long long>(compared_), static_cast<unsigned long long>(rate_drops),
              static_cast<unsigned long long>(new_source_drops));
  EXPECT_GT(rate_drops, 0u) << "the corpus never exercised the SYN buckets";
  EXPECT_GT(new_source_drops, 0u) << "the corpus never exercised the new-source budget";
}

TEST_F(DifferentialTest, ApiChangesReachBothPathsAlike) {
  set_clock(5000000000000ull);
  const auto syn = PacketBuilder().ipv4(kPeer4, kLocal4).tcp(41000, 25, kSyn).bytes();
  const auto ack6 = PacketBuilder().ipv6(kPeer6, kLocal6).tcp(41001, 25, kAck).bytes();
  ASSERT_TRUE(same(syn, "before"));
  for (xdp::FastPath* fp : {static_cast<xdp::FastPath*>(&prog_), static_cast<xdp::FastPath*>(&dpdk_)}) {
    MXEDGE_ASSERT_OK(fp->add_prefix(xdp::PrefixList::kBlock, "203.0.113.0/24"));
    MXEDGE_ASSERT_OK(fp->add_prefix(xdp::PrefixList::kBlock, "2001:db8:2::/48"));
  }
  ASSERT_TRUE(same(syn, "blocked /24"));
  ASSERT_TRUE(same(ack6, "blocked /48"));
  mxedge_verdict v{};
  EXPECT_EQ(dpdk_side(syn, &v).counter, unsigned{MXEDGE_CTR_DROP_BLOCKLIST});
  EXPECT_EQ(dpdk_side(ack6, &v).counter, unsigned{MXEDGE_CTR_DROP_BLOCKLIST});
  for (xdp::FastPath* fp : {static_cast<xdp::FastPath*>(&prog_), static_cast<xdp::FastPath*>(&dpdk_)}) {
    MXEDGE_ASSERT_OK(fp->add_prefix(xdp::PrefixList::kAllow, "203.0.113.5"));
    MXEDGE_ASSERT_OK(fp->remove_prefix(xdp::PrefixList::kBlock, "2001:db8:2::/48"));
    EXPECT_EQ(fp->remove_prefix(xdp::PrefixList::kBlock, "2001:db8:2::/48").err(), ENOENT);
  }
  ASSERT_TRUE(same(syn, "allowlisted inside a blocked /24"));
  EXPECT_TRUE(dpdk_side(syn, &v).allowlisted);
  ASSERT_TRUE(same(ack6, "unblocked"));
  // A rate limit of 1 SYN with a burst of 1, from an unlisted source.
  const auto syn2 = PacketBuilder().ipv4("203.0.114.9", kLocal4).tcp(41002, 25, kSyn).bytes();
  for (xdp::FastPath* fp : {static_cast<xdp::FastPath*>(&prog_), static_cast<xdp::FastPath*>(&dpdk_)})
    MXEDGE_ASSERT_OK(fp->set_rate_limit(1, 1));
  ASSERT_TRUE(same(syn2, "first SYN"));
  ASSERT_TRUE(same(syn2, "second SYN"));
  EXPECT_EQ(dpdk_side(syn2, &v).counter, unsigned{MXEDGE_CTR_DROP_RATE_LIMIT});
  set_clock(5000000000000ull + 2000000000ull);
  ASSERT_TRUE(same(syn2, "after 2 s"));
  for (xdp::FastPath* fp : {static_cast<xdp::FastPath*>(&prog_), static_cast<xdp::FastPath*>(&dpdk_)})
    MXEDGE_ASSERT_OK(fp->set_steering(false));
  ASSERT_TRUE(same(ack6, "steering off"));
  EXPECT_EQ(dpdk_side(ack6, &v).counter, unsigned{MXEDGE_CTR_PASS_SMTP});
  // Local addresses in LPM mode (a prefix, not a host): 192.0.2.0/28 is already one.
  for (xdp::FastPath* fp : {static_cast<xdp::FastPath*>(&prog_), static_cast<xdp::FastPath*>(&dpdk_)}) {
    std::vector<std::string> local{"198.18.0.0/15", "2001:db8:9::/64"};
    MXEDGE_ASSERT_OK(fp->set_local_addresses(local));
  }
  ASSERT_TRUE(same(PacketBuilder().ipv4(kPeer4, "198.19.1.1").tcp(41003, 25, kAck).bytes(), "local /15"));
  ASSERT_TRUE(same(PacketBuilder().ipv4(kPeer4, kLocal4).tcp(41004, 25, kAck).bytes(), "no longer local"));
  ASSERT_TRUE(same(PacketBuilder().ipv6(kPeer6, "2001:db8:9::77").tcp(41005, 25, kAck).bytes(), "local /64"));
  EXPECT_EQ(dpdk_side(PacketBuilder().ipv4(kPeer4, kLocal4).tcp(41004, 25, kAck).bytes(), &v).counter,
            unsigned{MXEDGE_CTR_PASS_NOT_SMTP});
  std::vector<xdp::IpPrefix> listed;
  MXEDGE_ASSERT_OK(dpdk_.list_prefixes(xdp::PrefixList::kLocal, &listed));
  EXPECT_EQ(listed.size(), 2u);
}

}  // namespace
}  // namespace mxedge::bpftest
