// Benchmark (not a test: it prints figures and asserts nothing about speed): the DPDK fast path's
// classifier, in Mpps per lcore, on DPDK's software vdevs net_null and net_ring, next to
// dpdk-testpmd's io forwarding on the same kinds of vdevs with the same lcore layout, in one run.
// The target is mxedge >= 0.5x testpmd; the program prints the ratio and never fails on it
// (it exits non-zero only when something cannot be set up or measured).
//
// Layout, both programs: main lcore on CPU 0, one forwarding lcore on CPU 1, bursts of 32, frames
// of 80 bytes. Per vdev kind (net_null, then net_ring), --rounds rounds, each one run of mxedge and
// one of testpmd (never at the same time; which goes first alternates by round), each run
// --seconds measured after --warmup; the table shows the median runs.
//
// mxedge (in this process): EAL with every vdev up front (net_null0/1 with size=80, net_ring0/1),
// a DpdkFastPath opened for one lcore state, the fixture config of tests/bpf (local 192.0.2.0/28
// and 2001:db8:1::1, blocklist 198.51.100.0/24 and 2001:db8:bad::/48, allowlist 198.51.100.7 and
// 2001:db8:bad::7, SYN rate limit on at a rate no source here reaches, so every SYN costs a bucket
// lookup and update but none is dropped, steering on with two workers), and the fast path's own
// burst loop (DpdkFastPath::launch) on ports this program configures: the "wire" port (1 RX + 1
// TX queue) is classified; the "kernel-side" port stands where the TAP device would be, with one
// queue per worker, so each steering target is a queue of its own. The loop forwards the kernel
// side's RX back to the wire's TX, as it does with a TAP device.
//   net_null: wire net_null0, kernel side net_null1 (2 queues). net_null (copy=0) hands out mbufs
//     from the pool given to rte_eth_rx_queue_setup without writing them, so the wire pool's
//     mbufs are written once, up front, with the frame mix (printed). By default the wire pool
//     has 2048 mbufs and no per-lcore cache (single-producer/consumer ring ops: FIFO), so the
//     lcore cycles through all of them in order, about what a NIC RX ring of that size recycles;
//     --wire-mbufs 16384 makes it colder (no hugepages here: a TLB miss per mbuf, lines from
//     DRAM), --pool-cache N gives it testpmd's arrangement (a cache: the same 32 hot mbufs every
//     burst, the mix reduced to 32 frames). net_null1's RX (the "kernel's" frames) never stops
//     either, so per loop the lcore classifies 32 wire frames and forwards 2 x 32 kernel frames.
//   net_ring: wire net_ring0, kernel side net_ring1 (2 queues when the PMD has them; else one
//     worker, said in the output). A net_ring queue's TX ring is its own RX ring, so frames
//     circulate: wire RX -> classify -> net_ring1 queue w -> (the loop's kernel side) -> net_ring0
//     TX -> wire RX. 512 frames of the mix without its dropping kinds are transmitted onto the
//     wire port once. Each lap is one classification and two frames moved, as each lap of
//     testpmd io is two frames moved.
//
// testpmd (a child process): `dpdk-testpmd -l 0,1 --no-huge --no-pci --no-shconf -m 1024
// --file-prefix tpbench --vdev <A> --vdev <B> -- -i --forward-mode=io --nb-cores=1 --burst=32
// --total-num-mbufs=16384`, driven through its interactive prompt on a pipe: `start` (`start
// tx_first` on net_ring, so 32 frames per port circulate), warm-up, `show port stats all`,
// --seconds, `show port stats all` again, `stop`, `quit`: the last display's Rx-pps of each port
// is the rate over the interval as testpmd timed it; their sum is the frames the forwarding lcore
// moved per second. (The prompt rather than --stats-period: the periodic display comes every ~2 s
// here and its first covers start-up.)
//
// Figures (Mpps = 10^6 frames per second, all on the one forwarding lcore):
//   classified  mxedge: frames received on the wire port and classified, per second (rx_wire);
//   moved       mxedge: frames received on all the lcore's RX queues (wire + kernel side), each then
//               transmitted or, for a drop verdict, freed; testpmd: frames received on both ports,
//               each then transmitted: the like-for-like quantity, and the ratio's;
//   strict      classified / testpmd moved, the strictest reading of "classifier Mpps vs testpmd";
//   ns over io  the lcore time per classified frame beyond what io forwarding costs for the frames
//               the loop moved: 1000/classified - (moved/classified) * 1000/testpmd_moved; an
//               estimate of the classifier's own cost (parse, lists, bucket, steering, counters).
// Caveats: testpmd io never reads a frame (it moves mbuf pointers), mxedge parses every wire frame
// and reads its mbuf; on net_null 2/3 of mxedge's moved figure is kernel-side forwarding.
//
//   bench_dpdk [--seconds N] [--warmup S] [--rounds N] [--testpmd PATH] [--json FILE]
//              [--wire-mbufs N] [--pool-cache N]                              (root, ~90 s by default)
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bpf/mxedge_abi.h"
#include "dataplane/dpdk/dpdk_fast_path.h"
#include "tests/bpf/packet_builder.h"

extern char** environ;

namespace {

using mxedge::bpftest::kAck;
using mxedge::bpftest::kPsh;
using mxedge::bpftest::kSyn;
using mxedge::bpftest::PacketBuilder;
using mxedge::dpdk::DpdkFastPath;
using Clock = std::chrono::steady_clock;

constexpr size_t kFrameSize = 80;      // net_null size=80; ring frames are padded to it
constexpr uint16_t kBurst = 32;        // testpmd's default burst
constexpr unsigned kFwdCpu = 1;        // the forwarding lcore, both programs
constexpr uint32_t kPoolMbufs = 16384;  // as testpmd's --total-num-mbufs
constexpr unsigned kRingFrames = 512;   // frames circulating in mxedge's net_ring run
constexpr unsigned kWorkers = 2;

struct Options {
  double seconds = 5;
  double warmup = 1;
  std::string testpmd = "/usr/bin/dpdk-testpmd";
  std::string json;
  unsigned pool_cache = 0;
  unsigned wire_mbufs = 2048;
  unsigned rounds = 3;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--seconds N] [--warmup S] [--rounds N] [--testpmd PATH] [--json FILE]\n"
               "          [--wire-mbufs N (>= 1024)] [--pool-cache N (<= 512)]\n",
               argv0);
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--seconds") o.seconds = std::atof(value().c_str());
    else if (a == "--warmup") o.warmup = std::atof(value().c_str());
    else if (a == "--testpmd") o.testpmd = value();
    else if (a == "--json") o.json = value();
    else if (a == "--pool-cache") o.pool_cache = static_cast<unsigned>(std::atoi(value().c_str()));
    else if (a == "--wire-mbufs") o.wire_mbufs = static_cast<unsigned>(std::atoi(value().c_str()));
    else if (a == "--rounds") o.rounds = static_cast<unsigned>(std::atoi(value().c_str()));
    else usage(argv[0]);
  }
  if (o.seconds <= 0 || o.warmup < 0 || o.rounds == 0 || o.wire_mbufs < 1024 || o.pool_cache > 512) usage(argv[0]);
  return o;
}

// ---------------------------------------------------------------------------------------------
// The frame mix.

struct Kind {
  const char* name;
  unsigned percent;
  bool drops;  // the verdict is a drop (left out of the circulating net_ring mix)
  std::function<std::vector<uint8_t>(unsigned i)> make;  // i varies the source and ports
};

std::string v4_peer(unsigned i) {  // 10.0.0.0/8: on no list; one source per frame
  return "10." + std::to_string((i >> 16) & 0xff) + "." + std::to_string((i >> 8) & 0xff) + "." +
         std::to_string(i & 0xff);
}
std::string v6_peer(unsigned i) {  // one /64 per frame (the rate limit's key)
  char s[64];
  std::snprintf(s, sizeof s, "2001:db8:2:%x::%x", i & 0xffff, 5 + (i >> 16));
  return s;
}
uint16_t sport(unsigned i) { return static_cast<uint16_t>(1024 + (i * 7919u) % 60000u); }

std::vector<Kind> frame_kinds() {
  return {
      {"IPv4 SMTP established (ACK/PSH-ACK) -> 192.0.2.1:25", 35, false,
       [](unsigned i) {
         return PacketBuilder().ipv4(v4_peer(i), "192.0.2.1").tcp(sport(i), 25, i % 2 ? kAck : kAck | kPsh).bytes();
       }},
      {"IPv4 SMTP SYN -> 192.0.2.1:25 (rate-limit bucket)", 10, false,
       [](unsigned i) { return PacketBuilder().ipv4(v4_peer(i), "192.0.2.1").tcp(sport(i), 25, kSyn, 4).bytes(); }},
      {"IPv6 SMTP established -> [2001:db8:1::1]:25", 15, false,
       [](unsigned i) { return PacketBuilder().ipv6(v6_peer(i), "2001:db8:1::1").tcp(sport(i), 25, kAck).bytes(); }},
      {"IPv6 SMTP SYN -> [2001:db8:1::1]:25", 5, false,
       [](unsigned i) { return PacketBuilder().ipv6(v6_peer(i), "2001:db8:1::1").tcp(sport(i), 25, kSyn).bytes(); }},
      {"IPv4 SMTP SYN from allowlisted 198.51.100.7", 2, false,
       [](unsigned i) { return PacketBuilder().ipv4("198.51.100.7", "192.0.2.1").tcp(sport(i), 25, kSyn, 4).bytes(); }},
      {"IPv4 SMTP from blocklisted 198.51.100.0/24", 7, true,
       [](unsigned i) {
         return PacketBuilder().ipv4("198.51.100." + std::to_string(8 + i % 240), "192.0.2.1")
             .tcp(sport(i), 25, i % 2 ? kSyn : kAck).bytes();
       }},
      {"IPv6 SMTP from blocklisted 2001:db8:bad::/48", 3, true,
       [](unsigned i) {
         char s[64];
         std::snprintf(s, sizeof s, "2001:db8:bad:%x::9", i & 0xffff);
         return PacketBuilder().ipv6(s, "2001:db8:1::1").tcp(sport(i), 25, kSyn).bytes();
       }},
      {"IPv4 TCP -> 192.0.2.1:80 (not SMTP)", 10, false,
       [](unsigned i) { return PacketBuilder().ipv4(v4_peer(i), "192.0.2.1").tcp(sport(i), 80, kAck).bytes(); }},
      {"UDP DNS, IPv4 and IPv6 (not SMTP)", 8, false,
       [](unsigned i) {
         return i % 2 ? PacketBuilder().ipv4(v4_peer(i), "192.0.2.1").udp(sport(i), 53).payload(12).bytes()
                      : PacketBuilder().ipv6(v6_peer(i), "2001:db8:1::1").udp(sport(i), 53).bytes();
       }},
      {"ARP (not IP)", 5, false, [](unsigned) { return PacketBuilder().ethertype(0x0806).payload(28).bytes(); }},
  };
}

// `count` frames of the mix (with or without the dropping kinds), each padded to kFrameSize, in a
// fixed pseudo-random order.
std::vector<std::vector<uint8_t>> make_frames(size_t count, bool with_drops) {
  std::vector<Kind> kinds = frame_kinds();
  std::vector<unsigned> slots;  // kind index per percent point
  for (unsigned k = 0; k < kinds.size(); ++k) {
    if (kinds[k].drops && !with_drops) continue;
    slots.insert(slots.end(), kinds[k].percent, k);
  }
  std::vector<std::vector<uint8_t>> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    // Spread each kind's share evenly: frame i takes slot (i * 37) mod |slots| (37 is prime to 100
    // and to the ring mix's 90), then the whole list is shuffled below.
    const unsigned k = slots[(i * 37) % slots.size()];
    std::vector<uint8_t> f = kinds[k].make(static_cast<unsigned>(i));
    if (f.size() > kFrameSize) {
      std::fprintf(stderr, "frame of kind '%s' is %zu bytes, over %zu\n", kinds[k].name, f.size(), kFrameSize);
      std::exit(1);
    }
    f.resize(kFrameSize, 0);  // trailing padding after the IP datagram, as on a minimum-size link
    out.push_back(std::move(f));
  }
  std::mt19937 rng(0x6d78);
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

std::string mix_text(bool with_drops) {
  unsigned total = 0;
  for (const auto& k : frame_kinds()) total += (k.drops && !with_drops) ? 0 : k.percent;
  std::string s;
  for (const auto& k : frame_kinds()) {
    if (k.drops && !with_drops) continue;
    char line[160];
    std::snprintf(line, sizeof line, "    %5.1f%%  %s\n", 100.0 * k.percent / total, k.name);
    s += line;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// DPDK set-up of this program's ports and pools.

bool port_id(const char* name, uint16_t* id) {
  if (rte_eth_dev_get_port_by_name(name, id) == 0) return true;
  std::fprintf(stderr, "no DPDK port '%s'\n", name);
  return false;
}

uint16_t max_queues(uint16_t port) {
  rte_eth_dev_info info{};
  if (rte_eth_dev_info_get(port, &info) != 0) return 0;
  return std::min(info.max_rx_queues, info.max_tx_queues);
}

bool setup_port(uint16_t port, uint16_t queues, rte_mempool* pool) {
  rte_eth_conf conf{};
  int rc = rte_eth_dev_configure(port, queues, queues, &conf);
  uint16_t nrx = 1024, ntx = 1024;
  if (rc == 0) rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx);
  for (uint16_t q = 0; rc == 0 && q < queues; ++q) {
    rc = rte_eth_rx_queue_setup(port, q, nrx, static_cast<unsigned>(rte_socket_id()), nullptr, pool);
    if (rc == 0) rc = rte_eth_tx_queue_setup(port, q, ntx, static_cast<unsigned>(rte_socket_id()), nullptr);
  }
  if (rc == 0) rc = rte_eth_dev_start(port);
  if (rc != 0) {
    std::fprintf(stderr, "port %u: set-up failed: %s\n", port, rte_strerror(-rc));
    return false;
  }
  rte_eth_promiscuous_enable(port);
  return true;
}

struct WriteFrames {
  const std::vector<std::vector<uint8_t>>* frames;
};

// rte_mempool_obj_iter callback: writes frame (index mod count) where a fresh mbuf's data starts.
void write_mbuf(rte_mempool*, void* opaque, void* obj, unsigned index) {
  const auto& frames = *static_cast<WriteFrames*>(opaque)->frames;
  auto* m = static_cast<rte_mbuf*>(obj);
  const auto& f = frames[index % frames.size()];
  std::memcpy(static_cast<char*>(m->buf_addr) + RTE_PKTMBUF_HEADROOM, f.data(), f.size());
}

// ---------------------------------------------------------------------------------------------
// mxedge's run.

struct Snapshot {
  Clock::time_point at;
  mxedge::dpdk::LcoreStats stats;
  mxedge::xdp::XdpCounters counters;
};

Snapshot snapshot(const DpdkFastPath& fp) {
  Snapshot s;
  s.stats = fp.lcore_stats().at(0);
  (void)fp.read_counters(&s.counters);
  s.at = Clock::now();
  return s;
}

struct MxResult {
  bool ok = false;
  double classified_mpps = 0;
  double moved_mpps = 0;
  uint64_t tap_tx_dropped = 0, wire_tx_dropped = 0, buckets_full = 0;
  std::vector<std::pair<std::string, double>> verdicts;  // counter name, share of classified frames
  double allowlisted_share = 0;
  std::string note;
};

MxResult run_mxedge(DpdkFastPath& fp, const Options& o, uint16_t wire, uint16_t kernel, uint16_t kernel_queues) {
  MxResult r;
  DpdkFastPath::LcoreQueues q;
  q.wire_rx = {{wire, 0}};
  q.wire_tx = {{wire, 0}};
  std::vector<DpdkFastPath::Queue> taps;
  for (uint16_t i = 0; i < kernel_queues; ++i) taps.push_back({kernel, i});
  q.tap = {taps};
  const std::array<unsigned, 1> cpus{kFwdCpu};
  std::vector<DpdkFastPath::LcoreQueues> queues{q};
  if (auto s = fp.launch(cpus, std::move(queues), kBurst); !s.ok()) {
    std::fprintf(stderr, "launch: %s\n", s.to_string().c_str());
    return r;
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));
  const Snapshot a = snapshot(fp);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  const Snapshot b = snapshot(fp);
  fp.stop();

  const double secs = std::chrono::duration<double>(b.at - a.at).count();
  const uint64_t wire_rx = b.stats.rx_wire - a.stats.rx_wire;
  const uint64_t kernel_rx = b.stats.rx_kernel - a.stats.rx_kernel;
  r.classified_mpps = static_cast<double>(wire_rx) / secs / 1e6;
  r.moved_mpps = static_cast<double>(wire_rx + kernel_rx) / secs / 1e6;
  r.tap_tx_dropped = b.stats.tap_tx_dropped - a.stats.tap_tx_dropped;
  r.wire_tx_dropped = b.stats.wire_tx_dropped - a.stats.wire_tx_dropped;
  r.buckets_full = b.stats.buckets_full - a.stats.buckets_full;
  const double total = std::max<double>(1, static_cast<double>(wire_rx));
  for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i) {
    const uint64_t n = b.counters.packets(i) - a.counters.packets(i);
    if (i == MXEDGE_CTR_ALLOWLISTED) {
      r.allowlisted_share = static_cast<double>(n) / total;
    } else if (n != 0) {
      r.verdicts.emplace_back(mxedge::xdp::counter_name(i), static_cast<double>(n) / total);
    }
  }
  r.ok = wire_rx > 0;
  if (!r.ok) std::fprintf(stderr, "mxedge: no frame received on the wire port\n");
  return r;
}

// ---------------------------------------------------------------------------------------------
// testpmd's run: a child process driven through its prompt.

class Testpmd {
 public:
  ~Testpmd() { finish(); }

  bool spawn(const std::string& path, const std::vector<std::string>& args) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return false;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    std::vector<std::string> all{path};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, path.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    in_ = in[1];
    out_ = out[0];
    if (rc != 0) {
      pid_ = -1;
      std::fprintf(stderr, "testpmd: spawn %s: %s\n", path.c_str(), std::strerror(rc));
      return false;
    }
    return true;
  }

  // Reads until the next "testpmd> " prompt.
  bool prompt(double timeout_s) {
    static const std::string kPrompt = "testpmd> ";
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      const size_t at = log_.find(kPrompt, mark_);
      if (at != std::string::npos) {
        mark_ = at + kPrompt.size();
        return true;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || !read_some(static_cast<int>(left))) return false;
    }
  }

  bool send(const std::string& command) {
    const std::string line = command + "\n";
    return ::write(in_, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  }

  // Closes stdin, waits for the exit (killing the child after timeout_s); true on exit status 0.
  bool finish(double timeout_s = 30) {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
    bool ok = false;
    if (pid_ > 0) {
      const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
      int status = 0;
      for (;;) {
        read_some(100);
        const pid_t w = ::waitpid(pid_, &status, WNOHANG);
        if (w == pid_) {
          ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
          break;
        }
        if (Clock::now() > deadline) {
          std::fprintf(stderr, "testpmd: no exit after %.0f s, killing pid %d\n", timeout_s, static_cast<int>(pid_));
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
      }
      pid_ = -1;
    }
    if (out_ >= 0) ::close(out_);
    out_ = -1;
    return ok;
  }

  const std::string& log() const { return log_; }

 private:
  bool read_some(int timeout_ms) {
    if (out_ < 0) return false;
    pollfd p{out_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[8192];
    const ssize_t n = ::read(out_, buf, sizeof buf);
    if (n <= 0) return false;
    log_.append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string log_;
  size_t mark_ = 0;
};

struct TpResult {
  bool ok = false;
  double moved_mpps = 0;                 // sum of the ports' Rx-pps
  std::vector<double> port_mpps;         // each port's Rx-pps
  std::string command;
};

// The numbers after each "Rx-pps:" in a `show port stats all` output, one per port.
std::vector<double> rx_pps(const std::string& text) {
  std::vector<double> out;
  for (size_t at = text.find("Rx-pps:"); at != std::string::npos; at = text.find("Rx-pps:", at + 1)) {
    out.push_back(std::strtod(text.c_str() + at + 7, nullptr));
  }
  return out;
}

TpResult run_testpmd(const Options& o, const std::vector<std::string>& vdevs, bool tx_first) {
  TpResult r;
  std::vector<std::string> args{"-l", "0," + std::to_string(kFwdCpu), "--no-huge", "--no-pci", "--no-shconf",
                                "-m", "1024", "--file-prefix", "tpbench"};
  for (const auto& v : vdevs) args.insert(args.end(), {"--vdev", v});
  args.insert(args.end(), {"--", "-i", "--forward-mode=io", "--nb-cores=1", "--burst=" + std::to_string(kBurst),
                           "--total-num-mbufs=" + std::to_string(kPoolMbufs)});
  r.command = o.testpmd;
  for (const auto& a : args) r.command += " " + a;

  Testpmd tp;
  auto fail = [&](const char* what) {
    tp.finish(5);
    const std::string& log = tp.log();
    std::fprintf(stderr, "testpmd: %s; its output ends:\n%s\n", what,
                 log.substr(log.size() > 3000 ? log.size() - 3000 : 0).c_str());
    return r;
  };
  if (!tp.spawn(o.testpmd, args)) return r;
  if (!tp.prompt(120)) return fail("no prompt");
  if (!tp.send(tx_first ? "start tx_first" : "start") || !tp.prompt(20)) return fail("start");
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));
  if (!tp.send("show port stats all") || !tp.prompt(20)) return fail("show port stats");
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  if (!tp.send("show port stats all") || !tp.prompt(20)) return fail("show port stats");
  if (!tp.send("stop") || !tp.prompt(20)) return fail("stop");
  tp.send("quit");
  if (!tp.finish()) std::fprintf(stderr, "testpmd: exited with an error after the measurement\n");

  // testpmd's stdout is a pipe, so its stdio output arrives late (block-buffered) while the prompt
  // does not: the figures are read from the whole transcript once it has exited. The last
  // `show port stats all` printed one Rx-pps per port, the interval's rate as testpmd timed it.
  const std::vector<double> all = rx_pps(tp.log());
  if (all.size() >= 2 * vdevs.size()) {
    for (size_t i = all.size() - vdevs.size(); i < all.size(); ++i) {
      r.port_mpps.push_back(all[i] / 1e6);
      r.moved_mpps += all[i] / 1e6;
    }
  }
  r.ok = r.moved_mpps > 0;
  if (!r.ok) fail("could not read the ports' Rx-pps");
  return r;
}

// ---------------------------------------------------------------------------------------------

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string one, five, fifteen;
  f >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen + " on " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) +
         " CPUs (above ~1: other processes compete for them)";
}

struct Row {
  std::string vdev;
  std::string mx_layout;
  std::string mix;
  MxResult mx;  // the round with the median classified rate
  TpResult tp;  // the round with the median moved rate
  std::vector<double> mx_rounds, tp_rounds;  // classified Mpps, testpmd moved Mpps, per round
  double ratio() const { return tp.moved_mpps > 0 ? mx.moved_mpps / tp.moved_mpps : 0; }
  double strict_ratio() const { return tp.moved_mpps > 0 ? mx.classified_mpps / tp.moved_mpps : 0; }
  double ns_over_io() const {
    if (mx.classified_mpps <= 0 || tp.moved_mpps <= 0) return 0;
    return 1000.0 / mx.classified_mpps - (mx.moved_mpps / mx.classified_mpps) * 1000.0 / tp.moved_mpps;
  }
};

// Runs mxedge and testpmd o.rounds times each, alternating, the first of each round alternating
// too, so a drift in the machine's other load falls on both alike; keeps the median rounds.
bool measure(Row& row, const Options& o, const std::function<MxResult()>& mx, const std::function<TpResult()>& tp) {
  std::vector<MxResult> mxs;
  std::vector<TpResult> tps;
  for (unsigned round = 0; round < o.rounds; ++round) {
    for (int step = 0; step < 2; ++step) {
      const bool mx_now = (step == 0) == (round % 2 == 0);
      std::printf("round %u/%u: %s on %s, %.1f s ...\n", round + 1, o.rounds, mx_now ? "mxedge" : "testpmd io",
                  row.vdev.c_str(), o.seconds);
      std::fflush(stdout);
      if (mx_now) {
        mxs.push_back(mx());
        if (!mxs.back().ok) return false;
      } else {
        tps.push_back(tp());
        if (!tps.back().ok) return false;
      }
    }
  }
  for (const auto& m : mxs) row.mx_rounds.push_back(m.classified_mpps);
  for (const auto& t : tps) row.tp_rounds.push_back(t.moved_mpps);
  std::sort(mxs.begin(), mxs.end(), [](const MxResult& a, const MxResult& b) { return a.classified_mpps < b.classified_mpps; });
  std::sort(tps.begin(), tps.end(), [](const TpResult& a, const TpResult& b) { return a.moved_mpps < b.moved_mpps; });
  row.mx = mxs[mxs.size() / 2];
  row.tp = tps[tps.size() / 2];
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  if (::access(o.testpmd.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "testpmd not found or not executable: %s (--testpmd PATH)\n", o.testpmd.c_str());
    return 1;
  }

  // EAL once, with every vdev of both runs.
  const std::string null_vdev0 = "net_null0,size=" + std::to_string(kFrameSize);
  const std::string null_vdev1 = "net_null1,size=" + std::to_string(kFrameSize);
  const std::vector<std::string> eal{"--no-huge", "--no-pci", "--no-shconf", "-m", "1024", "--file-prefix", "mxbench",
                                     "--vdev", null_vdev0, "--vdev", null_vdev1, "--vdev", "net_ring0",
                                     "--vdev", "net_ring1"};
  const std::array<unsigned, 1> lcores{kFwdCpu};
  if (auto s = mxedge::dpdk::init_eal(eal, lcores); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.to_string().c_str());
    return 1;
  }

  DpdkFastPath fp;
  mxedge::dpdk::DpdkOptions options;
  options.lcores = 1;
  if (auto s = fp.open(options); !s.ok()) {
    std::fprintf(stderr, "open: %s\n", s.to_string().c_str());
    return 1;
  }
  mxedge::xdp::XdpConfig config;  // tests/bpf/xdp_fixture.h's, with a rate limit no source reaches
  config.pin_dir = "";
  config.local_addresses = {"192.0.2.0/28", "2001:db8:1::1"};
  config.blocklist = {"198.51.100.0/24", "2001:db8:bad::/48"};
  config.allowlist = {"198.51.100.7", "2001:db8:bad::7/128"};
  config.syn_rate = 1000000;
  config.syn_burst = 1000;
  config.steering = true;
  config.worker_cpus = {0, 1};
  config.cpumap_qsize = 1024;
  if (auto s = fp.apply(config); !s.ok()) {
    std::fprintf(stderr, "apply: %s\n", s.to_string().c_str());
    return 1;
  }

  uint16_t null0 = 0, null1 = 0, ring0 = 0, ring1 = 0;
  if (!port_id("net_null0", &null0) || !port_id("net_null1", &null1) || !port_id("net_ring0", &ring0) ||
      !port_id("net_ring1", &ring1))
    return 1;

  std::vector<Row> rows;

  // --- net_null ---
  {
    Row row;
    row.vdev = "net_null";
    row.mix = mix_text(true);
    // The wire pool: FIFO through its mbufs (no cache; single-producer/consumer ring ops, as only
    // the lcore allocates and frees during a run), or testpmd's arrangement with --pool-cache.
    const int socket = static_cast<int>(rte_socket_id());
    rte_mempool* wire_pool =
        o.pool_cache == 0
            ? rte_pktmbuf_pool_create_by_ops("bench_wire", o.wire_mbufs, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket,
                                             "ring_sp_sc")
            : rte_pktmbuf_pool_create("bench_wire", o.wire_mbufs, o.pool_cache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
    rte_mempool* kernel_pool =
        rte_pktmbuf_pool_create("bench_kernel", kPoolMbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
    if (wire_pool == nullptr || kernel_pool == nullptr) {
      std::fprintf(stderr, "mbuf pools: %s\n", rte_strerror(rte_errno));
      return 1;
    }
    const auto frames = make_frames(o.wire_mbufs, true);
    WriteFrames wf{&frames};
    rte_mempool_obj_iter(wire_pool, write_mbuf, &wf);
    // The kernel side's frames (never classified): an SMTP reply, for realism only.
    auto reply = PacketBuilder().ipv4("192.0.2.1", "10.0.0.1").tcp(25, 40000, kAck | kPsh).bytes();
    reply.resize(kFrameSize, 0);
    const std::vector<std::vector<uint8_t>> replies{reply};
    WriteFrames wr{&replies};
    rte_mempool_obj_iter(kernel_pool, write_mbuf, &wr);

    const uint16_t kq = std::min<uint16_t>(kWorkers, max_queues(null1));
    if (kq == 0 || !setup_port(null0, 1, wire_pool) || !setup_port(null1, kq, kernel_pool)) return 1;
    row.mx_layout = "wire net_null0 (1 queue, " + std::to_string(o.wire_mbufs) + " mbufs " +
                    (o.pool_cache == 0 ? std::string("in FIFO order") : "with a cache of " + std::to_string(o.pool_cache)) +
                    ") -> kernel side net_null1 (" + std::to_string(kq) + " queues)";
    const bool ok = measure(row, o, [&] { return run_mxedge(fp, o, null0, null1, kq); },
                            [&] { return run_testpmd(o, {null_vdev0, null_vdev1}, false); });
    rte_eth_dev_stop(null0);
    rte_eth_dev_stop(null1);
    if (!ok) return 1;
    rows.push_back(std::move(row));
  }

  // --- net_ring ---
  {
    Row row;
    row.vdev = "net_ring";
    row.mix = mix_text(false);
    rte_mempool* ring_pool = rte_pktmbuf_pool_create("bench_ring", 2048, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                     static_cast<int>(rte_socket_id()));
    if (ring_pool == nullptr) {
      std::fprintf(stderr, "mbuf pool: %s\n", rte_strerror(rte_errno));
      return 1;
    }
    const uint16_t kq = std::min<uint16_t>(kWorkers, max_queues(ring1));
    if (kq == 0 || !setup_port(ring0, 1, ring_pool) || !setup_port(ring1, kq, ring_pool)) return 1;
    if (kq < kWorkers) {
      // One queue: steer everything to one worker, so no frame is counted pass_no_worker.
      const std::array<unsigned, 1> one{0};
      if (auto s = fp.set_workers(one, config.cpumap_qsize); !s.ok()) return 1;
      row.mx_layout = "net_ring1 has 1 queue: one worker; ";
    }
    row.mx_layout += "wire net_ring0 (1 queue) <-> kernel side net_ring1 (" + std::to_string(kq) + " queues), " +
                     std::to_string(kRingFrames) + " frames circulating";

    // Prefill: the circulating frames, transmitted onto the wire port (whose TX ring is its RX).
    // They stay in the rings between rounds (the lcore is stopped, nothing else touches them).
    const auto frames = make_frames(kRingFrames, false);
    std::vector<rte_mbuf*> mbufs(frames.size());
    if (rte_pktmbuf_alloc_bulk(ring_pool, mbufs.data(), static_cast<unsigned>(mbufs.size())) != 0) {
      std::fprintf(stderr, "mbufs for the ring\n");
      return 1;
    }
    for (size_t i = 0; i < frames.size(); ++i) {
      char* data = rte_pktmbuf_append(mbufs[i], static_cast<uint16_t>(frames[i].size()));
      std::memcpy(data, frames[i].data(), frames[i].size());
    }
    const uint16_t sent = rte_eth_tx_burst(ring0, 0, mbufs.data(), static_cast<uint16_t>(mbufs.size()));
    for (size_t i = sent; i < mbufs.size(); ++i) rte_pktmbuf_free(mbufs[i]);
    if (sent < mbufs.size()) row.mx_layout += " (only " + std::to_string(sent) + " fit)";

    const bool ok = measure(row, o, [&] { return run_mxedge(fp, o, ring0, ring1, kq); },
                            [&] { return run_testpmd(o, {"net_ring0", "net_ring1"}, true); });
    // Drain what still circulates.
    std::array<rte_mbuf*, kBurst> rx{};
    for (uint16_t port : {ring0, ring1}) {
      for (uint16_t q = 0; q < (port == ring0 ? 1 : kq); ++q) {
        for (uint16_t n; (n = rte_eth_rx_burst(port, q, rx.data(), kBurst)) != 0;) rte_pktmbuf_free_bulk(rx.data(), n);
      }
    }
    rte_eth_dev_stop(ring0);
    rte_eth_dev_stop(ring1);
    if (!ok) return 1;
    rows.push_back(std::move(row));
  }

  // --- report ---
  std::printf(
      "\nmxedge DPDK fast path vs dpdk-testpmd io forwarding: 1 forwarding lcore on CPU %u (main lcore CPU 0),\n"
      "%zu-byte frames, bursts of %u; %u rounds of %.1f s (after %.1f s warm-up) per program and vdev,\n"
      "alternating, one program at a time; medians. Load average now: %s\n"
      "  classified  mxedge: wire-port frames classified per second\n"
      "  moved       frames received on every RX queue the lcore polls, per second (mxedge: wire + kernel side;\n"
      "              testpmd: both ports), each then sent on (or, on a drop verdict, freed): like for like\n"
      "  ratio       mxedge moved / testpmd moved (the issue's target: >= 0.5)\n"
      "  strict      mxedge classified / testpmd moved\n"
      "  ns over io  lcore ns per classified frame beyond io forwarding of the frames the loop moved\n"
      "              (1000/classified - moved/classified * 1000/testpmd): the classifier's own cost\n\n",
      kFwdCpu, kFrameSize, kBurst, o.rounds, o.seconds, o.warmup, load_average().c_str());
  std::printf("%-9s %12s %12s %14s %7s %7s %11s\n", "vdev", "classified", "moved", "testpmd moved", "ratio",
              "strict", "ns over io");
  std::printf("%-9s %12s %12s %14s %7s %7s %11s\n", "", "Mpps", "Mpps", "Mpps", "", "", "");
  for (const Row& r : rows) {
    std::printf("%-9s %12.2f %12.2f %14.2f %6.2fx %6.2fx %11.1f\n", r.vdev.c_str(), r.mx.classified_mpps,
                r.mx.moved_mpps, r.tp.moved_mpps, r.ratio(), r.strict_ratio(), r.ns_over_io());
  }
  for (const Row& r : rows) {
    std::printf("\n%s\n  mxedge: %s\n  frame mix (share of the frames written):\n%s", r.vdev.c_str(),
                r.mx_layout.c_str(), r.mix.c_str());
    std::printf("  verdicts mxedge applied (read_counters, share of classified frames):");
    for (const auto& [name, share] : r.mx.verdicts) std::printf(" %s %.1f%%", name.c_str(), 100 * share);
    std::printf("; allowlisted %.1f%%\n", 100 * r.mx.allowlisted_share);
    std::printf("  mxedge TX refused: kernel side %llu, wire %llu; SYN buckets full %llu\n",
                static_cast<unsigned long long>(r.mx.tap_tx_dropped), static_cast<unsigned long long>(r.mx.wire_tx_dropped),
                static_cast<unsigned long long>(r.mx.buckets_full));
    std::printf("  rounds, mxedge classified Mpps:");
    for (double m : r.mx_rounds) std::printf(" %.2f", m);
    std::printf("; testpmd moved Mpps:");
    for (double m : r.tp_rounds) std::printf(" %.2f", m);
    std::printf("\n  testpmd Rx-pps per port (Mpps, median round):");
    for (double m : r.tp.port_mpps) std::printf(" %.2f", m);
    std::printf("\n  testpmd: %s\n", r.tp.command.c_str());
  }
  std::printf(
      "\nCaveats: testpmd io forwards mbuf pointers and never reads a frame; mxedge reads every wire frame\n"
      "(parse, list lookups, SYN bucket, flow hash) and its mbuf. mxedge's net_null loop forwards 2 kernel-side\n"
      "bursts per classified burst, so 2/3 of its moved figure is forwarding; on net_ring each lap is one\n"
      "classification and two moves. net_null wire pool: %s.\n"
      "No hugepages (--no-huge): 4 KiB pages, so cold mbufs and rte_lpm's 64 MiB tables cost TLB misses\n"
      "that a hugepage deployment would not pay. Other processes on these 2 CPUs add noise to both programs.\n",
      o.pool_cache == 0 ? ("FIFO through " + std::to_string(o.wire_mbufs) +
                           " mbufs (each frame and mbuf reused only after all the others; --wire-mbufs 16384 for "
                           "colder, --pool-cache 256 for testpmd's hot cache)").c_str()
                        : ("cache of " + std::to_string(o.pool_cache) + ": the same hot mbufs every burst").c_str());

  if (!o.json.empty()) {
    nlohmann::json j;
    j["seconds"] = o.seconds;
    j["warmup"] = o.warmup;
    j["frame_bytes"] = kFrameSize;
    j["burst"] = kBurst;
    j["forwarding_cpu"] = kFwdCpu;
    j["pool_cache"] = o.pool_cache;
    j["wire_mbufs"] = o.wire_mbufs;
    j["rounds"] = o.rounds;
    for (const Row& r : rows) {
      nlohmann::json v;
      v["vdev"] = r.vdev;
      v["mxedge_layout"] = r.mx_layout;
      v["mxedge_classified_mpps"] = r.mx.classified_mpps;
      v["mxedge_moved_mpps"] = r.mx.moved_mpps;
      v["testpmd_moved_mpps"] = r.tp.moved_mpps;
      v["testpmd_port_mpps"] = r.tp.port_mpps;
      v["ratio_moved"] = r.ratio();
      v["ratio_classified"] = r.strict_ratio();
      v["ns_over_io"] = r.ns_over_io();
      for (const auto& [name, share] : r.mx.verdicts) v["verdicts"][name] = share;
      v["allowlisted"] = r.mx.allowlisted_share;
      v["kernel_tx_refused"] = r.mx.tap_tx_dropped;
      v["wire_tx_refused"] = r.mx.wire_tx_dropped;
      v["mxedge_classified_mpps_rounds"] = r.mx_rounds;
      v["testpmd_moved_mpps_rounds"] = r.tp_rounds;
      v["testpmd_command"] = r.tp.command;
      j["results"].push_back(v);
    }
    std::ofstream f(o.json);
    f << j.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", o.json.c_str());
      return 1;
    }
  }
  return 0;
}
