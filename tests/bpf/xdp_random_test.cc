// Randomized test of bpf/xdp_smtp.bpf.c through BPF_PROG_TEST_RUN: many random frames (random layers,
// tags, options, extension headers, fragments, protocols, ports, flags, sources), half of them then
// mutated (bytes flipped, cut, extended, or replaced by garbage). For every frame the verdict must be
// one of the documented ones; for every unmutated frame the counter that moved must be the one a
// small model of the documented rules predicts; and at the end the exclusive counters must add up
// exactly to the frames sent, their bytes to the bytes sent, and the drops to the XDP_DROP verdicts.
//
// The seed is printed; MXEDGE_BPF_SEED=<n> replays a run, MXEDGE_BPF_FRAMES=<n> changes its length.
#include <linux/bpf.h>
#include <netinet/in.h>

#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/bpf/frame_generator.h"
#include "tests/bpf/xdp_fixture.h"

namespace mxedge::bpftest {
namespace {

class XdpRandomTest : public XdpFixture {
 protected:
  xdp::XdpConfig config() override { return random_config(XdpFixture::config()); }
};

TEST_F(XdpRandomTest, VerdictsAreDocumentedAndCountersAddUp) {
  const uint64_t seed = env_or("MXEDGE_BPF_SEED", std::random_device{}());
  const uint64_t frames = env_or("MXEDGE_BPF_FRAMES", 20000);
  std::printf("MXEDGE_BPF_SEED=%llu MXEDGE_BPF_FRAMES=%llu\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(frames));
  Generator gen(seed);
  uint64_t clock = 1000000000000ull;
  prog_.set_test_clock(clock);

  const xdp::XdpCounters start = counters();
  uint64_t bytes = 0, drops = 0, passes = 0, redirects = 0, checked = 0;
  for (uint64_t i = 0; i < frames; ++i) {
    if (gen.uniform(0, 9) == 0) {
      clock += static_cast<uint64_t>(gen.uniform(0, 2000)) * 1000;  // up to 2 ms
      prog_.set_test_clock(clock);
    }
    Expectation want;
    std::vector<uint8_t> frame = gen.frame(&want);
    bool mutated = gen.coin();
    if (mutated) frame = gen.mutate(frame);

    xdp::XdpCounters before;
    if (!mutated) before = counters();
    RunResult r = test_run(prog_.prog_fd(), frame);
    ASSERT_EQ(r.err, 0) << "frame " << i;
    ASSERT_TRUE(r.retval == XDP_PASS || r.retval == XDP_DROP || r.retval == XDP_REDIRECT)
        << "frame " << i << ": " << action_name(r.retval);
    bytes += frame.size();
    drops += r.retval == XDP_DROP;
    passes += r.retval == XDP_PASS;
    redirects += r.retval == XDP_REDIRECT;
    if (mutated) continue;

    xdp::XdpCounters after = counters();
    std::set<unsigned> moved;
    for (unsigned c = 0; c < MXEDGE_CTR_COUNT; ++c) {
      if (c == MXEDGE_CTR_ALLOWLISTED) continue;
      uint64_t d = after.packets(c) - before.packets(c);
      if (d) moved.insert(c >= MXEDGE_CTR_STEERED_WORKER0 ? kAnySteered : c);
      ASSERT_LE(d, 1u);
    }
    ASSERT_EQ(moved.size(), 1u) << "frame " << i << ": exactly one exclusive counter moves";
    unsigned got = *moved.begin();
    ASSERT_TRUE(want.counters.count(got))
        << "frame " << i << " (seed " << seed << "): counter "
        << (got == kAnySteered ? "steered" : xdp::counter_name(got)) << " is not what the rules predict";
    uint64_t allow = after.packets(MXEDGE_CTR_ALLOWLISTED) - before.packets(MXEDGE_CTR_ALLOWLISTED);
    if (got == kAnySteered) {
      ASSERT_EQ(allow, static_cast<uint64_t>(want.allowlisted)) << "frame " << i;
    }
    ++checked;
  }

  const xdp::XdpCounters end = counters();
  uint64_t counted = end.all_packets() - start.all_packets();
  uint64_t counted_bytes = 0;
  for (unsigned c = 0; c < MXEDGE_CTR_COUNT; ++c) {
    if (c != MXEDGE_CTR_ALLOWLISTED) counted_bytes += end.total[c].bytes - start.total[c].bytes;
  }
  auto delta = [&](unsigned c) { return end.packets(c) - start.packets(c); };
  EXPECT_EQ(counted, frames);
  EXPECT_EQ(counted_bytes, bytes);
  EXPECT_EQ(drops, delta(MXEDGE_CTR_MALFORMED) + delta(MXEDGE_CTR_DROP_BLOCKLIST) + delta(MXEDGE_CTR_DROP_RATE_LIMIT));
  EXPECT_EQ(passes + redirects, frames - drops);
  std::printf(
      "frames %llu (model-checked %llu): pass %llu, redirect %llu, drop %llu "
      "(malformed %llu, blocklist %llu, rate limit %llu), not SMTP %llu, fragments %llu\n",
      static_cast<unsigned long long>(frames), static_cast<unsigned long long>(checked),
      static_cast<unsigned long long>(passes), static_cast<unsigned long long>(redirects),
      static_cast<unsigned long long>(drops), static_cast<unsigned long long>(delta(MXEDGE_CTR_MALFORMED)),
      static_cast<unsigned long long>(delta(MXEDGE_CTR_DROP_BLOCKLIST)),
      static_cast<unsigned long long>(delta(MXEDGE_CTR_DROP_RATE_LIMIT)),
      static_cast<unsigned long long>(delta(MXEDGE_CTR_PASS_NOT_SMTP)),
      static_cast<unsigned long long>(delta(MXEDGE_CTR_PASS_FRAGMENT)));
}

}  // namespace
}  // namespace mxedge::bpftest
