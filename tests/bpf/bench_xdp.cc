// Benchmark (not a test: it prints figures and asserts nothing about time): nanoseconds per packet of
// bpf/xdp_smtp.bpf.c through BPF_PROG_TEST_RUN, next to the xdp-filter program Debian's xdp-tools
// ships (xdpfilt_alw_all.o: Ethernet, IPv4/IPv6 address and TCP/UDP port filters plus per-action
// stats) and a minimal XDP_PASS program, on four paths:
//   drop     SYN from a blocklisted source (mxedge: LPM blocklist hit; xdp-filter: IPv4 address hit)
//   pass     TCP to port 80 (mxedge: not SMTP; xdp-filter: every filter misses)
//   steer    established SMTP packet (ACK) steered to a worker CPU (xdp-filter: misses, passes)
//   new SYN  SYN to port 25: token-bucket update plus steering (xdp-filter: misses, passes)
// Each figure is the kernel's own per-run mean over `repeat` runs of one frame (so no syscall cost);
// the programs and paths are interleaved round by round, and the median over rounds is printed with
// the ratios. The steering target is another CPU than the benchmark's, so "steer" returns
// XDP_REDIRECT (in test-run mode the kernel stops there: no frame is queued to the cpumap).
//
//   bench_xdp [--rounds N] [--repeat N]      (root)
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_pass.skel.h"
#include "dataplane/xdp/xdp_program.h"
#include "tests/bpf/bpf_test_env.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/xdp_filter_peer.h"

namespace mxedge::bpftest {
namespace {

struct Path {
  const char* name;
  std::vector<uint8_t> frame;
  uint32_t mxedge_verdict;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main_impl(int argc, char** argv) {
  unsigned rounds = 15;
  uint32_t repeat = 1000000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rounds")) rounds = static_cast<unsigned>(std::atoi(argv[i + 1]));
    if (!std::strcmp(argv[i], "--repeat")) repeat = static_cast<uint32_t>(std::atoi(argv[i + 1]));
  }
  if (!pin_to_cpu(0)) std::fprintf(stderr, "warning: cannot pin to CPU 0\n");

  // mxedge as deployed: SMTP ports, local addresses listed, lists, rate limit, steering. The rate is
  // high enough that the repeated SYN stays admitted (every run still updates its bucket).
  xdp::XdpProgram mxedge;
  xdp::XdpProgramOptions options;
  options.pin_dir = "";
  xdp::XdpConfig config = base_config();
  config.local_addresses = {"192.0.2.1", "2001:db8:1::1"};
  config.blocklist = {"198.51.100.0/24", "2001:db8:bad::/48"};
  config.allowlist = {"198.51.100.7"};
  config.syn_rate = 1000000000;
  config.syn_burst = 1000000;
  config.worker_cpus = {possible_cpus() > 1 ? 1u : 0u};
  for (auto s : {mxedge.open(options), mxedge.load(), mxedge.apply(config)}) {
    if (!s.ok()) {
      std::fprintf(stderr, "mxedge: %s\n", s.to_string().c_str());
      return 1;
    }
  }
  bench_pass* pass = bench_pass__open_and_load();
  if (!pass) {
    std::fprintf(stderr, "bench_pass: load failed\n");
    return 1;
  }
  XdpFilter filter;
  const char* env = std::getenv("MXEDGE_XDPFILT");
  std::string path = env != nullptr ? env : xdpfilt_path("xdpfilt_alw_all.o");
  bool have_filter = load_xdp_filter(&filter, path, {"198.51.100.9", "2001:db8:bad::9"});
  if (!have_filter) std::fprintf(stderr, "xdpfilt_alw_all.o not found or not loadable (apt install xdp-tools)\n");

  const uint32_t steered = config.worker_cpus[0] == 0 ? XDP_PASS : XDP_REDIRECT;
  const std::vector<Path> paths = {
      {"drop (blocklisted source)", PacketBuilder().ipv4("198.51.100.9", "192.0.2.1").tcp(40000, 25, kSyn).bytes(),
       XDP_DROP},
      {"pass (not SMTP)", PacketBuilder().ipv4("203.0.113.5", "192.0.2.1").tcp(40000, 80, kAck).payload(64).bytes(),
       XDP_PASS},
      {"steer (established SMTP)",
       PacketBuilder().ipv4("203.0.113.5", "192.0.2.1").tcp(40000, 25, kAck | kPsh).payload(64).bytes(), steered},
      {"new SYN (bucket + steer)", PacketBuilder().ipv4("203.0.113.5", "192.0.2.1").tcp(40001, 25, kSyn).bytes(),
       steered},
  };
  struct Program {
    const char* name;
    int fd;
  };
  std::vector<Program> programs = {{"mxedge", mxedge.prog_fd()}, {"xdp-filter", filter.prog_fd}, {"XDP_PASS", -1}};
  programs[2].fd = bpf_program__fd(pass->progs.bench_pass);

  // Sanity: the verdicts the figures are about.
  for (const auto& p : paths) {
    RunResult r = test_run(mxedge.prog_fd(), p.frame);
    if (r.err || r.retval != p.mxedge_verdict) {
      std::fprintf(stderr, "%s: mxedge returned %s (err %d), expected %s\n", p.name, action_name(r.retval), r.err,
                   action_name(p.mxedge_verdict));
      return 1;
    }
    if (have_filter) {
      RunResult f = test_run(filter.prog_fd, p.frame);
      uint32_t want = p.mxedge_verdict == XDP_DROP ? XDP_DROP : XDP_PASS;
      if (f.err || f.retval != want) {
        std::fprintf(stderr, "%s: xdp-filter returned %s, expected %s\n", p.name, action_name(f.retval),
                     action_name(want));
        return 1;
      }
    }
  }

  // samples[path][program]
  std::vector<std::vector<std::vector<double>>> samples(paths.size(), std::vector<std::vector<double>>(3));
  for (unsigned round = 0; round < rounds; ++round) {
    for (size_t pi = 0; pi < paths.size(); ++pi) {
      for (size_t g = 0; g < programs.size(); ++g) {
        size_t gi = (g + round) % programs.size();  // rotate who goes first
        if (programs[gi].fd < 0) continue;
        RunResult r = test_run(programs[gi].fd, paths[pi].frame, repeat);
        if (r.err) {
          std::fprintf(stderr, "test run failed: %d\n", r.err);
          return 1;
        }
        samples[pi][gi].push_back(r.duration);
      }
    }
  }

  std::string cpu_model = "?";
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
      if (std::strncmp(line, "model name", 10) == 0) {
        const char* colon = std::strchr(line, ':');
        cpu_model = colon ? colon + 2 : line;
        cpu_model.erase(cpu_model.find_last_not_of("\n") + 1);
        break;
      }
    }
    std::fclose(f);
  }
  std::printf("BPF_PROG_TEST_RUN, ns per packet, median of %u interleaved rounds of %u runs; CPU: %s\n", rounds, repeat,
              cpu_model.c_str());
  std::printf("xdp-filter: %s\n\n", have_filter ? path.c_str() : "(not available)");
  std::printf("%-28s %9s %11s %9s %14s %16s\n", "path", "mxedge", "xdp-filter", "XDP_PASS", "mxedge/filter",
              "mxedge-XDP_PASS");
  for (size_t pi = 0; pi < paths.size(); ++pi) {
    double m = median(samples[pi][0]);
    double x = have_filter ? median(samples[pi][1]) : 0;
    double p = median(samples[pi][2]);
    char ratio[32] = "-";
    if (have_filter && x > 0) std::snprintf(ratio, sizeof ratio, "%.2fx", m / x);
    std::printf("%-28s %9.1f %11.1f %9.1f %14s %+13.1f ns\n", paths[pi].name, m, x, p, ratio, m - p);
  }
  std::printf("\ntargets: drop and pass <= 1.0x xdp-filter; new SYN <= 1.5x; <= +60 ns over XDP_PASS\n");
  bench_pass__destroy(pass);
  return 0;
}

}  // namespace
}  // namespace mxedge::bpftest

int main(int argc, char** argv) { return mxedge::bpftest::main_impl(argc, argv); }
