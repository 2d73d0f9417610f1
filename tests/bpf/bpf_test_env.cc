// Test helpers; see bpf_test_env.h.
#include "tests/bpf/bpf_test_env.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "dataplane/xdp/libbpf_support.h"

namespace mxedge::bpftest {

namespace {

RunResult run_once(int prog_fd, const void* data, size_t size, xdp_md* ctx, uint32_t repeat) {
  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.repeat = repeat;
  opts.data_in = data;
  opts.data_size_in = static_cast<uint32_t>(size);
  if (ctx) {
    opts.ctx_in = ctx;
    opts.ctx_size_in = sizeof(*ctx);
  }
  RunResult r;
  r.err = bpf_prog_test_run_opts(prog_fd, &opts);
  r.retval = opts.retval;
  r.duration = opts.duration;
  return r;
}

}  // namespace

RunResult test_run(int prog_fd, const std::vector<uint8_t>& frame, uint32_t repeat) {
  constexpr size_t kMinInput = 14;  // ETH_HLEN: the kernel refuses shorter input
  if (frame.size() >= kMinInput) return run_once(prog_fd, frame.data(), frame.size(), nullptr, repeat);

  // Linux >= 6.x (at least 6.18): the program's linear frame is the first ctx.data_end bytes of the
  // input, the rest becomes a fragment it never reads.
  std::vector<uint8_t> input = frame;
  input.resize(kMinInput, 0);
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(frame.size());
  RunResult r = run_once(prog_fd, input.data(), input.size(), &ctx, repeat);
  if (r.err != -EINVAL) return r;

  // Older kernels (6.1) want ctx.data_end == input size but accept up to 32 bytes of XDP metadata
  // (ctx.data) in front of the frame, counted in the 14.
  size_t meta = (kMinInput - frame.size() + 3) & ~size_t{3};
  input.assign(meta, 0);
  input.insert(input.end(), frame.begin(), frame.end());
  ctx = {};
  ctx.data = static_cast<uint32_t>(meta);
  ctx.data_end = static_cast<uint32_t>(input.size());
  return run_once(prog_fd, input.data(), input.size(), &ctx, repeat);
}

const char* action_name(uint32_t action) {
  switch (action) {
    case XDP_ABORTED:
      return "XDP_ABORTED";
    case XDP_DROP:
      return "XDP_DROP";
    case XDP_PASS:
      return "XDP_PASS";
    case XDP_TX:
      return "XDP_TX";
    case XDP_REDIRECT:
      return "XDP_REDIRECT";
  }
  return "XDP_?";
}

xdp::Status TempBpffs::create() {
  static bool unshared = false;
  if (!unshared) {
    if (unshare(CLONE_NEWNS) != 0) return xdp::Status::error(errno, "unshare(CLONE_NEWNS)");
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      return xdp::Status::error(errno, "make / private");
    }
    unshared = true;
  }
  char tmpl[] = "/tmp/mxedge-bpffs-XXXXXX";
  if (!mkdtemp(tmpl)) return xdp::Status::error(errno, "mkdtemp");
  path_ = tmpl;
  if (mount("bpf", path_.c_str(), "bpf", 0, "mode=0700") != 0) {
    int err = errno;
    rmdir(path_.c_str());
    path_.clear();
    return xdp::Status::error(err, "mount bpffs");
  }
  return xdp::Status();
}

TempBpffs::~TempBpffs() {
  if (path_.empty()) return;
  // Unmounting the only mount of this bpffs instance drops every pin in it.
  umount2(path_.c_str(), MNT_DETACH);
  rmdir(path_.c_str());
}

bool pin_to_cpu(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

unsigned possible_cpus() {
  int n = libbpf_num_possible_cpus();
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

xdp::XdpConfig base_config() {
  xdp::XdpConfig c;
  c.pin_dir = "";
  c.syn_rate = 0;
  c.cpumap_qsize = 64;
  for (unsigned cpu = 0; cpu < possible_cpus(); ++cpu) c.worker_cpus.push_back(cpu);
  return c;
}

}  // namespace mxedge::bpftest
