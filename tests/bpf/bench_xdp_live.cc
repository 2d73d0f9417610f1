// Benchmark (not a test: it prints figures and asserts nothing about speed): XDP_DROP throughput, in
// Mpps, of bpf/xdp_smtp.bpf.c attached natively to a veth, next to Debian's xdp-filter programs
// (xdp-tools: xdpfilt_alw_all.o, everything `xdp-filter load` can enable, and xdpfilt_alw_ip.o,
// what `xdp-filter load -f ip` loads: the least an IPv4 source blocklist needs), and a bare
// `return XDP_DROP` as the ceiling of this harness.
//
// Method. The process moves into a network namespace (and mount namespace, for a sysfs of that
// namespace) of its own, so the veth pair it creates there, and everything attached to it, goes
// away with the process however it ends; no address leaves it. Frames are injected with
// BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES: a two-instruction program returning XDP_TX runs on one
// end (inject) with ingress_ifindex = inject, so every frame is transmitted through the veth's
// ndo_xdp_xmit into the other end's receive ring (receive), where the program under test runs in
// native (driver) mode on the xdp_frame, as it would on a NIC's RX ring. The frame is one IPv4 TCP
// SYN to port 25 from a blocklisted source (mxedge: blocklist 10.232.200.0/24; xdp-filter: address
// 10.232.200.9 with the source flag, as `xdp-filter ip -m src 10.232.200.9` sets it). The rate is
// the growth of the program's own drop counter (mxedge: drop_blocklist; xdp-filter: its XDP_DROP
// stats record; bare: the receive veth's rx_packets) over a fixed interval, cross-checked against
// rx_packets. Programs are swapped round by round (rotating who goes first) and the median of the
// rounds is printed.
//
// The injector program is kept in the kernel's XDP dispatcher for the whole run by attaching it (generic
// mode) to a third veth pair that carries nothing: otherwise every BPF_PROG_RUN call adds it to the
// dispatcher and removes it afterwards, a text patch and an RCU grace period of ~20 ms per call, which
// left the CPU idle for most of each measured interval: before this change every program measured
// about 2.7 Mpps, the bare XDP_DROP one included, against 23 Mpps with the keeper (mxedge-pktgen found
// it, see tests/load/pktgen/pktgen_xdp.bpf.c).
//
// Injection and reception share one CPU: the test run's batch ends with a flush that schedules the
// receive veth's NAPI, which runs on the same CPU as soon as the batch enables bottom halves again.
// So Mpps = 1 / (inject cost + receive cost + program cost): the differences between programs are
// diluted by the harness's fixed cost, which the bare XDP_DROP row measures; "ns vs bare" undoes
// the dilution (1/Mpps - 1/Mpps of the bare program), comparable with bench_xdp's ns per packet.
// Why not the receiver alone, on a CPU of its own (threaded NAPI pinned away from the injector)?
// Tried: the injector then keeps the 256-frame ring full (15-60% of its frames refused) and the
// figures came out nonlinear and unstable: a slower program lost several times its own cost, and
// from run to run the bare XDP_DROP program fell behind mxedge. Page-allocator churn was ruled out
// (/proc/vmstat); cache-line contention on the full ring, plus the other load on the receiving CPU,
// is the likely cause. The single-CPU figure, with the harness cost measured, is the honest one.
//
//   bench_xdp_live [--rounds N] [--seconds S] [--batch N]   (root)
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/xdp/xdp_program.h"
#include "tests/bpf/bpf_test_env.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/xdp_filter_peer.h"

extern char** environ;

namespace mxedge::bpftest {
namespace {

constexpr const char* kInject = "mxbl0";   // PacketBuilder's source MAC 02:00:00:00:00:01
constexpr const char* kReceive = "mxbl1";  // PacketBuilder's destination MAC 02:00:00:00:00:02
constexpr const char* kBlockedSource = "10.232.200.9";
constexpr const char* kKeeper = "mxblk0";  // holds the injector in the XDP dispatcher (see the header)

using Clock = std::chrono::steady_clock;

int run(std::vector<std::string> argv) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

uint64_t read_u64(const std::string& path) {
  std::ifstream f(path);
  uint64_t v = 0;
  f >> v;
  return v;
}

uint64_t if_stat(const char* ifname, const char* name) {
  return read_u64(std::string("/sys/class/net/") + ifname + "/statistics/" + name);
}

// A private network namespace (and mount namespace with that namespace's sysfs on /sys): the veth
// pair, its XDP attachments and everything else here end with this process.
bool enter_private_namespaces() {
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
    std::perror("unshare(CLONE_NEWNET | CLONE_NEWNS)");
    return false;
  }
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0) {
    std::perror("mount sysfs");
    return false;
  }
  return true;
}

bool create_veth() {
  return run({"ip", "link", "add", kInject, "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", kReceive,
              "address", "02:00:00:00:00:02"}) == 0 &&
         run({"ip", "link", "add", kKeeper, "type", "veth", "peer", "name", "mxblk1"}) == 0 &&
         run({"ip", "link", "set", "lo", "up"}) == 0 && run({"ip", "link", "set", kInject, "up"}) == 0 &&
         run({"ip", "link", "set", kReceive, "up"}) == 0;
}

// A program of raw instructions: r0 = action; exit.
int load_return_program(uint32_t action, const char* name) {
  bpf_insn insns[2] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[0].dst_reg = BPF_REG_0;
  insns[0].imm = static_cast<int32_t>(action);
  insns[1].code = BPF_JMP | BPF_EXIT;
  return bpf_prog_load(BPF_PROG_TYPE_XDP, name, "GPL", insns, 2, nullptr);
}

// Injects `frame` into the inject veth's transmit path until `until`, in test runs of `chunk` frames.
// Returns the frames the test runs processed (all of them XDP_TX), or -1 on error.
int64_t inject(int tx_prog, const std::vector<uint8_t>& frame, unsigned ifindex, uint32_t batch, uint32_t chunk,
               Clock::time_point until) {
  int64_t frames = 0;
  do {
    xdp_md ctx{};
    ctx.data_end = static_cast<uint32_t>(frame.size());
    ctx.ingress_ifindex = ifindex;
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.data_in = frame.data();
    opts.data_size_in = static_cast<uint32_t>(frame.size());
    opts.ctx_in = &ctx;
    opts.ctx_size_in = sizeof(ctx);
    opts.repeat = static_cast<int>(chunk);
    opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
    opts.batch_size = batch;
    if (int err = bpf_prog_test_run_opts(tx_prog, &opts)) {
      std::fprintf(stderr, "BPF_PROG_RUN (live frames): %s\n", std::strerror(-err));
      return -1;
    }
    frames += chunk;
  } while (Clock::now() < until);
  return frames;
}

struct Contender {
  std::string name;
  std::function<bool()> attach;
  std::function<void()> detach;
  std::function<uint64_t()> drops;  // cumulative
};

struct Sample {
  double mpps = 0;
  double rx_mpps = 0;
  double ring_full = 0;  // share of injected frames ndo_xdp_xmit could not queue
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double med_all(const std::vector<Sample>& samples) {
  std::vector<double> v;
  for (const auto& s : samples) v.push_back(s.rx_mpps);
  return median(v);
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "?";
}

int main_impl(int argc, char** argv) {
  unsigned rounds = 9;
  double seconds = 1.0;
  uint32_t batch = 256;  // the most a test run takes (TEST_XDP_MAX_BATCH), and the veth ring size
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rounds"))
      rounds = static_cast<unsigned>(std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--seconds"))
      seconds = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch"))
      batch = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: %s [--rounds N] [--seconds S] [--batch N]\n", argv[0]);
      return 2;
    }
  }
  if (!enter_private_namespaces() || !create_veth()) {
    std::fprintf(stderr, "cannot set up the private namespace and veth pair (root needed)\n");
    return 1;
  }
  const unsigned inject_if = if_nametoindex(kInject);
  const unsigned receive_if = if_nametoindex(kReceive);
  const unsigned cpus = possible_cpus();
  if (!pin_to_cpu(0)) std::fprintf(stderr, "warning: cannot pin to CPU 0\n");

  const std::vector<uint8_t> frame = PacketBuilder().ipv4(kBlockedSource, "10.232.0.1").tcp(40000, 25, kSyn).bytes();
  int tx_prog = load_return_program(XDP_TX, "bench_tx");
  int drop_prog = load_return_program(XDP_DROP, "bench_drop");
  if (tx_prog < 0 || drop_prog < 0) {
    std::fprintf(stderr, "cannot load the XDP_TX/XDP_DROP programs\n");
    return 1;
  }
  if (int err = bpf_xdp_attach(static_cast<int>(if_nametoindex(kKeeper)), tx_prog, XDP_FLAGS_SKB_MODE, nullptr)) {
    std::fprintf(stderr, "cannot attach the injector to %s: %s\n", kKeeper, std::strerror(-err));
    return 1;
  }

  // mxedge as deployed on the drop path: SMTP ports, a local address, the blocklist, a rate limit,
  // steering to every CPU.
  xdp::XdpProgram mxedge;
  xdp::XdpProgramOptions options;
  options.pin_dir = "";
  xdp::XdpConfig config = base_config();
  config.local_addresses = {"10.232.0.1"};
  config.blocklist = {"10.232.200.0/24"};
  config.syn_rate = 20;
  config.syn_burst = 40;
  for (auto s : {mxedge.open(options), mxedge.load(), mxedge.apply(config)}) {
    if (!s.ok()) {
      std::fprintf(stderr, "mxedge: %s\n", s.to_string().c_str());
      return 1;
    }
  }
  XdpFilter filter_all, filter_ip;
  bool have_all = load_xdp_filter(&filter_all, xdpfilt_path("xdpfilt_alw_all.o"), {kBlockedSource});
  bool have_ip = load_xdp_filter(&filter_ip, xdpfilt_path("xdpfilt_alw_ip.o"), {kBlockedSource});
  if (!have_all || !have_ip)
    std::fprintf(stderr, "xdp-filter objects missing or not loadable (apt install xdp-tools)\n");

  // The verdicts the figures are about.
  for (auto [name, fd] :
       std::vector<std::pair<const char*, int>>{{"mxedge", mxedge.prog_fd()},
                                                {"xdpfilt_alw_all", have_all ? filter_all.prog_fd : -1},
                                                {"xdpfilt_alw_ip", have_ip ? filter_ip.prog_fd : -1}}) {
    if (fd < 0) continue;
    RunResult r = test_run(fd, frame);
    if (r.err || r.retval != XDP_DROP) {
      std::fprintf(stderr, "%s returned %s (err %d) on the blocklisted SYN, expected XDP_DROP\n", name,
                   action_name(r.retval), r.err);
      return 1;
    }
  }

  auto attach_fd = [receive_if](int fd) {
    int err = bpf_xdp_attach(static_cast<int>(receive_if), fd, XDP_FLAGS_DRV_MODE, nullptr);
    if (err) std::fprintf(stderr, "bpf_xdp_attach: %s\n", std::strerror(-err));
    return err == 0;
  };
  auto detach_fd = [receive_if] { bpf_xdp_detach(static_cast<int>(receive_if), XDP_FLAGS_DRV_MODE, nullptr); };
  std::vector<Contender> contenders;
  contenders.push_back({"mxedge",
                        [&] {
                          auto s = mxedge.attach(kReceive, xdp::AttachMode::kNative);
                          if (!s.ok()) std::fprintf(stderr, "mxedge attach: %s\n", s.to_string().c_str());
                          return s.ok();
                        },
                        [&] { (void)mxedge.detach(kReceive); },
                        [&] {
                          xdp::XdpCounters c;
                          return mxedge.read_counters(&c).ok() ? c.packets(MXEDGE_CTR_DROP_BLOCKLIST) : 0;
                        }});
  if (have_all) {
    contenders.push_back({"xdpfilt_alw_all", [&] { return attach_fd(filter_all.prog_fd); }, detach_fd,
                          [&] { return xdp_filter_drops(filter_all); }});
  }
  if (have_ip) {
    contenders.push_back({"xdpfilt_alw_ip", [&] { return attach_fd(filter_ip.prog_fd); }, detach_fd,
                          [&] { return xdp_filter_drops(filter_ip); }});
  }
  contenders.push_back({"bare XDP_DROP", [&] { return attach_fd(drop_prog); }, detach_fd,
                        [] { return if_stat(kReceive, "rx_packets"); }});

  constexpr uint32_t kChunk = 1u << 16;  // frames per BPF_PROG_RUN call
  const auto interval = std::chrono::duration<double>(seconds);
  std::vector<std::vector<Sample>> samples(contenders.size());  // [contender][round]

  for (unsigned round = 0; round < rounds; ++round) {
    for (size_t k = 0; k < contenders.size(); ++k) {
      size_t ci = (k + round) % contenders.size();  // rotate who goes first
      Contender& c = contenders[ci];
      if (!c.attach()) return 1;
      // Warm up (caches, page pool), then measure.
      if (inject(tx_prog, frame, inject_if, batch, kChunk, Clock::now() + std::chrono::milliseconds(200)) < 0) return 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      uint64_t d0 = c.drops(), rx0 = if_stat(kReceive, "rx_packets"), full0 = if_stat(kInject, "tx_dropped");
      auto t0 = Clock::now();
      int64_t injected =
          inject(tx_prog, frame, inject_if, batch, kChunk, t0 + std::chrono::duration_cast<Clock::duration>(interval));
      auto t1 = Clock::now();
      if (injected < 0) return 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the ring drain
      uint64_t d1 = c.drops(), rx1 = if_stat(kReceive, "rx_packets"), full1 = if_stat(kInject, "tx_dropped");
      c.detach();
      double dt = std::chrono::duration<double>(t1 - t0).count();
      Sample s;
      s.mpps = static_cast<double>(d1 - d0) / dt / 1e6;
      s.rx_mpps = static_cast<double>(rx1 - rx0) / dt / 1e6;
      s.ring_full = injected > 0 ? static_cast<double>(full1 - full0) / static_cast<double>(injected) : 0;
      samples[ci].push_back(s);
      std::fprintf(stderr, "  round %u %-16s %6.3f Mpps dropped (rx %6.3f, ring full %4.1f%%)\n", round + 1,
                   c.name.c_str(), s.mpps, s.rx_mpps, 100 * s.ring_full);
    }
  }
  if (med_all(samples.back()) <= 0) {
    std::fprintf(stderr, "no frame reached %s: live-frames XDP_TX injection does not work here\n", kReceive);
    return 1;
  }
  std::string kernel;
  std::getline(std::ifstream("/proc/sys/kernel/osrelease") >> std::ws, kernel);
  std::printf("XDP_DROP throughput on a veth pair: native XDP on the receiving end, BPF_PROG_RUN live frames\n");
  std::printf("(XDP_TX from the other end) as the source, injector and receiver on one CPU\n");
  std::printf("CPU: %s; %u CPUs; kernel %s\n", cpu_model().c_str(), cpus, kernel.c_str());
  std::printf("frame: %zu-byte IPv4 TCP SYN to port 25 from %s (blocklisted); batch %u, %u frames per run\n",
              frame.size(), kBlockedSource, batch, kChunk);
  std::printf("median of %u interleaved rounds of %.1f s; Mpps from each program's own drop counter\n", rounds,
              seconds);
  for (const XdpFilter* f : {&filter_all, &filter_ip}) {
    if (f->prog_fd >= 0) std::printf("xdp-filter: %s\n", f->path.c_str());
  }
  std::printf("\n%-16s %8s %8s %8s %9s %10s %11s %9s\n", "program", "Mpps", "min", "max", "rx Mpps", "ring full",
              "ns vs bare", "mxedge/x");
  auto med = [&](size_t ci, double Sample::*field) {
    std::vector<double> v;
    for (const auto& s : samples[ci]) v.push_back(s.*field);
    return median(v);
  };
  const double bare = med(contenders.size() - 1, &Sample::mpps);
  for (size_t ci = 0; ci < contenders.size(); ++ci) {
    std::vector<double> v;
    for (const auto& s : samples[ci]) v.push_back(s.mpps);
    double m = med(ci, &Sample::mpps);
    // The ratio of each round (the two ran seconds apart, under the same outside load), then the median.
    std::vector<double> ratios;
    for (size_t r = 0; r < samples[ci].size() && r < samples[0].size(); ++r) {
      if (samples[ci][r].mpps > 0) ratios.push_back(samples[0][r].mpps / samples[ci][r].mpps);
    }
    char ratio[16] = "";
    if (ci > 0 && !ratios.empty()) std::snprintf(ratio, sizeof ratio, "%.2fx", median(ratios));
    char extra[24] = "";
    if (ci + 1 < contenders.size() && m > 0 && bare > 0)
      std::snprintf(extra, sizeof extra, "%+.1f ns", 1e3 / m - 1e3 / bare);
    std::printf("%-16s %8.3f %8.3f %8.3f %9.3f %9.1f%% %11s %9s\n", contenders[ci].name.c_str(), m,
                *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()), med(ci, &Sample::rx_mpps),
                100 * med(ci, &Sample::ring_full), extra, ratio);
  }
  std::printf("\nmxedge/x: mxedge's Mpps divided by that program's in the same round, median over rounds\n");
  std::printf("  (target >= 1.00x against xdp-filter).\n");
  std::printf("ns vs bare: 1/Mpps - 1/Mpps(bare XDP_DROP): the program's own cost per frame, harness removed.\n");
  std::printf("rx Mpps: the receiving veth's rx_packets (must match); ring full: injected frames the ring refused.\n");
  std::printf(
      "caveats: veth is not a NIC (no DMA, no descriptor rings, no RX refill; frames come from the\n"
      "  live-frames page pool); the injector's cost is in every figure and dilutes the differences (see\n"
      "  the bare XDP_DROP row); one flow and one source, so every lookup hits warm caches; the machine's\n"
      "  other load (2 shared CPUs here) moves the figures between rounds, see min/max.\n");
  close(tx_prog);
  close(drop_prog);
  return 0;
}

}  // namespace
}  // namespace mxedge::bpftest

int main(int argc, char** argv) { return mxedge::bpftest::main_impl(argc, argv); }
