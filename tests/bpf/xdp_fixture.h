// The fixture of the XDP program tests: a freshly loaded program (no pinning, test clock on) with a
// known config, the test thread pinned to CPU 0, and helpers that run a frame through
// BPF_PROG_TEST_RUN and check its verdict and the counters it moved.
#pragma once

#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bpf/mxedge_abi.h"
#include "dataplane/xdp/xdp_program.h"
#include "tests/bpf/bpf_test_env.h"
#include "tests/bpf/expect_ok.h"
#include "tests/bpf/packet_builder.h"

namespace mxedge::bpftest {

// Addresses of the fixture config.
inline constexpr const char* kLocal4 = "192.0.2.1";
inline constexpr const char* kOther4 = "192.0.2.99";  // not local
inline constexpr const char* kPeer4 = "203.0.113.5";
inline constexpr const char* kBlocked4 = "198.51.100.9";  // in blocklist 198.51.100.0/24
inline constexpr const char* kAllowed4 = "198.51.100.7";  // and in allowlist 198.51.100.7/32
inline constexpr const char* kLocal6 = "2001:db8:1::1";
inline constexpr const char* kOther6 = "2001:db8:1::99";
inline constexpr const char* kPeer6 = "2001:db8:2::5";
inline constexpr const char* kBlocked6 = "2001:db8:bad::9";  // in blocklist 2001:db8:bad::/48
inline constexpr const char* kAllowed6 = "2001:db8:bad::7";  // and in allowlist 2001:db8:bad::7/128

// Stands for "steered": XDP_REDIRECT, or XDP_PASS when the worker's CPU is the test's own CPU.
inline constexpr uint32_t kSteered = 0x5eed;

class XdpFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pin_to_cpu(0));
    xdp::XdpProgramOptions options;
    options.pin_dir = "";
    options.test_clock = true;
    MXEDGE_ASSERT_OK(prog_.open(options));
    MXEDGE_ASSERT_OK(prog_.load());
    MXEDGE_ASSERT_OK(prog_.apply(config()));
  }

  // Local addresses listed, the lists above, no rate limit, one worker on CPU 1 (CPU 0 on a
  // one-CPU machine), so a steered packet from this thread (on CPU 0) is an XDP_REDIRECT.
  virtual xdp::XdpConfig config() {
    xdp::XdpConfig c = base_config();
    c.local_addresses = {"192.0.2.0/28", "2001:db8:1::1"};
    c.blocklist = {"198.51.100.0/24", "2001:db8:bad::/48"};
    c.allowlist = {"198.51.100.7", "2001:db8:bad::7/128"};
    c.worker_cpus = {possible_cpus() > 1 ? 1u : 0u};
    return c;
  }

  uint32_t steered_verdict(unsigned worker_cpu) const { return worker_cpu == 0 ? XDP_PASS : XDP_REDIRECT; }

  xdp::XdpCounters counters() {
    xdp::XdpCounters c;
    xdp::Status s = prog_.read_counters(&c);
    EXPECT_TRUE(s.ok()) << s.to_string();
    return c;
  }

  uint32_t run(const std::vector<uint8_t>& frame, uint32_t repeat = 1) {
    RunResult r = test_run(prog_.prog_fd(), frame, repeat);
    EXPECT_EQ(r.err, 0) << "bpf_prog_test_run_opts";
    return r.retval;
  }

  // Runs frame once and checks: the verdict, that `counter` (an exclusive counter) moved by one
  // packet and frame.size() bytes and no other exclusive counter moved, and the allowlisted mark.
  void expect(const std::vector<uint8_t>& frame, uint32_t verdict, unsigned counter, bool allowlisted = false) {
    if (verdict == kSteered) {
      verdict = steered_verdict(prog_.config().worker_cpus[counter - MXEDGE_CTR_STEERED_WORKER0]);
    }
    xdp::XdpCounters before = counters();
    uint32_t got = run(frame);
    xdp::XdpCounters after = counters();
    EXPECT_EQ(got, verdict) << "got " << action_name(got) << ", want " << action_name(verdict);
    for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i) {
      uint64_t want = 0;
      if (i == counter || (i == MXEDGE_CTR_ALLOWLISTED && allowlisted)) want = 1;
      EXPECT_EQ(after.packets(i) - before.packets(i), want) << xdp::counter_name(i);
      EXPECT_EQ(after.total[i].bytes - before.total[i].bytes, want * frame.size()) << xdp::counter_name(i);
    }
  }

  xdp::XdpProgram prog_;
};

}  // namespace mxedge::bpftest
