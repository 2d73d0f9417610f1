// Shared by the BPF tests and the benchmark: BPF_PROG_TEST_RUN on a frame, a private bpf filesystem
// for pinning tests, CPU pinning, and the config the fixture tables start from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/xdp/status.h"
#include "dataplane/xdp/xdp_config.h"

namespace mxedge::bpftest {

struct RunResult {
  int err = 0;            // 0, or -errno of bpf_prog_test_run_opts
  uint32_t retval = 0;    // the XDP action of the last run
  uint32_t duration = 0;  // mean ns per run, as the kernel measured it
};

// Runs the XDP program prog_fd on frame `repeat` times. With repeat > 1 every run sees the maps as
// the previous run left them (this program never writes the frame). The kernel wants at least 14
// bytes of input; a shorter frame is handed over as the linear part of a longer input (or, on older
// kernels, behind XDP metadata), so truncation at every offset, down to the empty frame, is testable.
RunResult test_run(int prog_fd, const std::vector<uint8_t>& frame, uint32_t repeat = 1);

const char* action_name(uint32_t action);

// A bpf filesystem of this test process alone: the process moves to a private mount namespace
// (once) and mounts a fresh bpffs instance at a new temporary directory; the destructor unmounts it
// and removes the directory, so no pinned map outlives the test even if a test leaves pins behind.
class TempBpffs {
 public:
  TempBpffs() = default;
  ~TempBpffs();
  TempBpffs(const TempBpffs&) = delete;
  TempBpffs& operator=(const TempBpffs&) = delete;

  xdp::Status create();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool pin_to_cpu(unsigned cpu);
unsigned possible_cpus();

// Ports 25/465/587, any local address, no lists, no rate limit, steering on with one worker per
// possible CPU, qsize 64, no pinning, no interfaces.
xdp::XdpConfig base_config();

}  // namespace mxedge::bpftest
