// mxedge_pktgen.cc - mxedge-pktgen, the packet generator of mxedge's load tests.
//
// DESCRIPTION
//   Sends SYN floods and mixes of legitimate-looking and hostile frames out of one network device,
//   at a given rate or as fast as it can, for a duration or a count. It needs no NIC and no kernel
//   pktgen: frames are made by BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES. For each stream (a
//   kind of frame and an address family) it builds a template frame with correct checksums and
//   describes that template's layout in the table of its one rewriter program (pktgen_xdp.bpf.c);
//   a test run of that program with ingress_ifindex = --dev puts the template in a page pool, lets
//   the program draw the source address, port, sequence number and IP id of each frame (patching
//   the checksums), and transmits every frame it returns XDP_TX for through the device's
//   ndo_xdp_xmit: on a veth it arrives in the peer's receive ring, where the gateway's XDP program
//   sees it as it would see a frame from a NIC's ring. The program is kept in the kernel's XDP
//   dispatcher by a veth pair of its own (class Rewriter), which saves ~20 ms per test run.
//
//   Threads are pinned to --cpus (default: the last CPUs) and each sends its share of --rate in
//   windows of 10 ms of frames (64 Ki frames at the top rate), each window split over the streams
//   by weight (see sender()). Progress goes to stderr once a second; --json writes the totals.
//   The counts in the report are the program's own per-CPU, per-stream `sent` counters (frames
//   handed to the device), not what was requested: frames the device could not queue are then the
//   device's business (veth: xdp_xmit_errors in `ethtool -S`; a device that took fewer frames than
//   were sent is reported with a WARNING).
//
//   Exit status: 0 done, 1 could not run (BPF load, device, test run failed), 2 usage.
//
// STANDARDS
//   RFC 791 / RFC 8200 (headers), RFC 793 (TCP), RFC 768 (UDP), RFC 1071 / RFC 1624 (checksums).
//
// SECURITY
//   Root (CAP_BPF + CAP_NET_ADMIN). It transmits forged source addresses by design: point it only at
//   devices of a lab (the load scenarios use veth pairs inside their own network namespaces).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include "tests/load/pktgen/pktgen_abi.h"  // before the skeleton, which uses its struct
#include "pktgen_xdp.skel.h"
#include "tests/bpf/packet_builder.h"

extern char** environ;

namespace mxedge::pktgen {
namespace {

using Clock = std::chrono::steady_clock;
using bpftest::Frame;
using bpftest::PacketBuilder;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// What each kind of frame is (the help text lists the same).
struct KindInfo {
  const char* name;
  const char* what;
};
constexpr KindInfo kKinds[] = {
    {"syn", "TCP SYN to --dport (hostile in a flood, legitimate at a low rate)"},
    {"ack", "TCP ACK to --dport, no payload (looks like an established session)"},
    {"data", "TCP PSH+ACK to --dport with 32 bytes of payload (an established session)"},
    {"rst", "TCP RST to --dport"},
    {"udp", "UDP to port 53 (not SMTP)"},
    {"frag", "a non-first fragment of a TCP segment (no L4 header to look at)"},
    {"malformed", "TCP to --dport cut short inside its header"},
};

struct Address {
  int family = 0;  // 4 or 6
  uint8_t bytes[16] = {};
};

std::optional<Address> parse_address(const std::string& text) {
  Address a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes) == 1) {
    a.family = 4;
    return a;
  }
  if (inet_pton(AF_INET6, text.c_str(), a.bytes) == 1) {
    a.family = 6;
    return a;
  }
  return std::nullopt;
}

std::string format_address(const Address& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.family == 4 ? AF_INET : AF_INET6, a.bytes, buf, sizeof(buf));
  return buf;
}

// Where the sources of one family come from: base with the `random_bits` low bits of the prefix
// drawn per frame (0: the fixed address base).
struct SourceSpec {
  Address base;
  unsigned prefix_len = 0;  // bits of base kept; 32/128 for a fixed source
};

std::optional<SourceSpec> parse_source(const std::string& text, std::string& error) {
  SourceSpec s;
  auto slash = text.find('/');
  auto addr = parse_address(text.substr(0, slash));
  if (!addr) {
    error = fmt::format("'{}' is not an address or prefix", text);
    return std::nullopt;
  }
  s.base = *addr;
  const unsigned max = addr->family == 4 ? 32 : 128;
  s.prefix_len = max;
  if (slash != std::string::npos) {
    const std::string len = text.substr(slash + 1);
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(len.c_str(), &end, 10);
    if (len.empty() || *end != '\0' || errno != 0 || v > max) {
      error = fmt::format("'{}': the prefix length must be 0..{}", text, max);
      return std::nullopt;
    }
    s.prefix_len = static_cast<unsigned>(v);
  }
  return s;
}

struct Options {
  std::string dev;
  std::string dst;
  std::string dst_mac;
  std::string src_mac;
  uint16_t dport = 25;
  std::string sources = "random";
  std::string family = "4";
  std::string mix = "syn";
  double rate = 0;
  double duration = 0;
  uint64_t count = 0;
  unsigned threads = 1;
  std::string cpus;
  uint32_t batch = 64;
  std::string json;
  bool quiet = false;
};

struct Stream {
  std::string kind;
  int family = 4;
  double weight = 0;
  uint32_t index = 0;  // its entry in the program's stream table
  Frame frame;
};

// The one rewriter program for every stream, and the device that keeps it in the kernel's XDP
// dispatcher (see pktgen_xdp.bpf.c): a veth pair of our own, created in the current network
// namespace, with the program attached in generic mode to one end. Nothing is ever sent on it.
// Deleted at exit; a run killed with SIGKILL leaves it behind (named mxpgk<pid>).
class Rewriter {
 public:
  ~Rewriter() {
    if (keeper_ifindex_ != 0) bpf_xdp_detach(static_cast<int>(keeper_ifindex_), XDP_FLAGS_SKB_MODE, nullptr);
    if (!keeper_.empty()) run_quiet({"ip", "link", "del", keeper_});
    if (skel_) pktgen_xdp__destroy(skel_);
  }
  pktgen_xdp* skel() { return skel_; }
  std::string open() {
    skel_ = pktgen_xdp__open();
    return skel_ ? std::string() : fmt::format("cannot open the BPF object: {}", std::strerror(errno));
  }
  std::string load() {
    if (int err = pktgen_xdp__load(skel_)) return fmt::format("cannot load the BPF program: {}", std::strerror(-err));
    return {};
  }
  // Best effort: without the keeper every test run pays the dispatcher update (about 20 ms).
  void keep_in_dispatcher() {
    const std::string name = fmt::format("mxpgk{}", getpid() % 1000000);
    if (run_quiet({"ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"}) != 0) {
      fmt::print(stderr, "mxedge-pktgen: note: cannot create {} (each test run then costs ~20 ms more)\n", name);
      return;
    }
    keeper_ = name;
    const unsigned ifindex = if_nametoindex(name.c_str());
    if (ifindex == 0 || bpf_xdp_attach(static_cast<int>(ifindex), prog_fd(), XDP_FLAGS_SKB_MODE, nullptr) != 0) {
      fmt::print(stderr, "mxedge-pktgen: note: cannot attach to {} (each test run then costs ~20 ms more)\n", name);
      return;
    }
    keeper_ifindex_ = ifindex;
  }
  int prog_fd() const { return bpf_program__fd(skel_->progs.pktgen_rewrite); }
  int stats_fd() const { return bpf_map__fd(skel_->maps.stats); }

 private:
  static int run_quiet(std::vector<std::string> argv) {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return -1;
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  pktgen_xdp* skel_ = nullptr;
  std::string keeper_;
  unsigned keeper_ifindex_ = 0;
};

bool parse_mac(const std::string& text, uint8_t out[6]) {
  unsigned v[6];
  char tail;
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
    return false;
  for (int i = 0; i < 6; i++) {
    if (v[i] > 255) return false;
    out[i] = static_cast<uint8_t>(v[i]);
  }
  return true;
}

std::string read_first_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// "0-3,6" -> {0,1,2,3,6}
std::optional<std::vector<int>> parse_cpu_list(const std::string& text) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    std::string part = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    int lo = 0, hi = 0;
    char tail;
    if (std::sscanf(part.c_str(), "%d-%d%c", &lo, &hi, &tail) == 2) {
    } else if (std::sscanf(part.c_str(), "%d%c", &lo, &tail) == 1) {
      hi = lo;
    } else {
      return std::nullopt;
    }
    if (lo < 0 || hi < lo) return std::nullopt;
    for (int c = lo; c <= hi; c++) out.push_back(c);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

// The stream's template frame (checksums computed by PacketBuilder) with the MACs put in.
Frame build_template(const std::string& kind, const Address& src, const Address& dst, uint16_t dport,
                     const uint8_t dst_mac[6], const uint8_t src_mac[6]) {
  PacketBuilder b;
  const std::string s = format_address(src), d = format_address(dst);
  if (src.family == 4)
    b.ipv4(s, d);
  else
    b.ipv6(s, d);
  Frame f;
  if (kind == "syn") {
    f = b.tcp(40000, dport, bpftest::kSyn, 4).build();
  } else if (kind == "ack") {
    f = b.tcp(40000, dport, bpftest::kAck).build();
  } else if (kind == "data") {
    f = b.tcp(40000, dport, bpftest::kAck | bpftest::kPsh).payload(32).build();
  } else if (kind == "rst") {
    f = b.tcp(40000, dport, bpftest::kRst).build();
  } else if (kind == "udp") {
    f = b.udp(40000, 53).payload(32).build();
  } else if (kind == "frag") {
    f = b.fragment(64, false).tcp(40000, dport, bpftest::kAck).payload(64).build();
  } else {  // malformed: the TCP header cut at 10 of its 20 bytes
    f = b.tcp(40000, dport, bpftest::kSyn).build();
    f.bytes.resize(f.l4 + 10);
  }
  std::memcpy(f.bytes.data(), dst_mac, 6);
  std::memcpy(f.bytes.data() + 6, src_mac, 6);
  return f;
}

// The stream's entry in the program's table: its template's layout and its sources.
void describe_stream(const Stream& st, const SourceSpec& src, pktgen_stream* out) {
  const Frame& f = st.frame;
  const bool v4 = st.family == 4;
  const bool has_l4 = st.kind != "frag";
  const bool tcp = has_l4 && st.kind != "udp";
  const bool cut = st.kind == "malformed";
  *out = pktgen_stream{};
  out->frame_len = static_cast<uint32_t>(f.bytes.size());
  out->src_addr_off = static_cast<uint32_t>(f.l3 + (v4 ? 12 : 8));
  out->src_words = v4 ? 1 : 4;
  for (unsigned w = 0; w < out->src_words; w++) {
    uint32_t base;
    std::memcpy(&base, src.base.bytes + 4 * w, 4);
    uint32_t keep = 0;  // host order: bits of this word kept from base
    for (unsigned b = 0; b < 32; b++) {
      if (w * 32 + b < src.prefix_len) keep |= 0x80000000u >> b;
    }
    out->src_base[w] = base;
    out->src_mask[w] = htonl(~keep);
  }
  out->ipv4_csum_off = v4 ? static_cast<uint32_t>(f.l3 + 10) : 0;
  out->ipv4_id_off = v4 ? static_cast<uint32_t>(f.l3 + 4) : 0;
  out->l4_csum_off = has_l4 && !cut ? static_cast<uint32_t>(f.l4 + (tcp ? 16 : 6)) : 0;
  out->l4_csum_zero_is_ffff = has_l4 && !tcp ? 1 : 0;
  out->sport_off = has_l4 ? static_cast<uint32_t>(f.l4) : 0;
  out->tcp_seq_off = tcp && !cut ? static_cast<uint32_t>(f.l4 + 4) : 0;
}

struct StreamTotals {
  uint64_t sent = 0;
  uint64_t short_frames = 0;
};

StreamTotals read_totals(int stats_fd, const Stream& st, unsigned ncpus) {
  struct pktgen_stats_v {
    uint64_t sent;
    uint64_t bad_frames;
  };
  std::vector<pktgen_stats_v> per_cpu(ncpus);
  uint32_t key = st.index;
  StreamTotals t;
  if (bpf_map_lookup_elem(stats_fd, &key, per_cpu.data()) != 0) return t;
  for (const auto& v : per_cpu) {
    t.sent += v.sent;
    t.short_frames += v.bad_frames;
  }
  return t;
}

struct alignas(64) ThreadState {
  std::atomic<uint64_t> submitted{0};
  std::string error;
};

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }

// One sending thread: pinned to cpu, `rate` frames/s (0: as fast as it can), until `until` or
// `quota` frames (0: no quota) or a stop. It works in windows: 10 ms of frames at the asked rate
// (at the top rate, 64 Ki frames, fewer near the end of --duration at the speed measured so far),
// each window split over the streams by weight (fractions carried to the next window), one test
// run per stream, so the mix holds at every scale. Within a window frames leave at the device's
// speed; windows are paced to the rate.
void sender(std::vector<Stream>* streams, Rewriter* rewriter, unsigned ifindex, int cpu, double rate,
            Clock::time_point until, uint64_t quota, uint32_t batch, ThreadState* state) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
    state->error = fmt::format("cannot pin to CPU {}", cpu);
    return;
  }
  volatile uint32_t* stream_slot = &rewriter->skel()->bss->stream_of_cpu[cpu];
  double frames_per_s = 1e6;  // top-rate estimate, replaced by measurement
  std::vector<double> carry(streams->size(), 0.0);
  double total_weight = 0;
  for (const auto& s : *streams) total_weight += s.weight;
  const auto start = Clock::now();
  uint64_t done = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    const auto now = Clock::now();
    if (now >= until) break;
    if (quota && done >= quota) break;
    if (rate > 0) {
      // The next window is due when the frames sent so far have had their time.
      const double wait_s = static_cast<double>(done) / rate - std::chrono::duration<double>(now - start).count();
      if (wait_s > 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(std::min(wait_s, 0.05)));
        continue;
      }
    }
    double window_frames = rate > 0 ? std::max(1.0, rate * 0.01) : 65536.0;
    if (rate == 0 && until != Clock::time_point::max()) {
      window_frames = std::min(window_frames, frames_per_s * std::chrono::duration<double>(until - now).count());
    }
    if (quota) window_frames = std::min(window_frames, static_cast<double>(quota - done));
    window_frames = std::max(window_frames, 1.0);
    const auto window_start = Clock::now();
    uint64_t window_done = 0;
    for (size_t i = 0; i < streams->size(); i++) {
      const Stream& st = (*streams)[i];
      carry[i] += window_frames * st.weight / total_weight;
      auto n = static_cast<uint64_t>(carry[i]);
      if (quota) n = std::min(n, quota - done - window_done);
      if (n == 0) continue;
      carry[i] -= static_cast<double>(n);
      *stream_slot = st.index;
      xdp_md ctx{};
      ctx.data_end = static_cast<uint32_t>(st.frame.bytes.size());
      ctx.ingress_ifindex = ifindex;
      bpf_test_run_opts opts{};
      opts.sz = sizeof(opts);
      opts.data_in = st.frame.bytes.data();
      opts.data_size_in = static_cast<uint32_t>(st.frame.bytes.size());
      opts.ctx_in = &ctx;
      opts.ctx_size_in = sizeof(ctx);
      opts.repeat = static_cast<int>(n);
      opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
      opts.batch_size = batch;
      if (int err = bpf_prog_test_run_opts(rewriter->prog_fd(), &opts)) {
        state->error = fmt::format("BPF_PROG_RUN (live frames) on CPU {}: {}", cpu, std::strerror(-err));
        return;
      }
      window_done += n;
    }
    const double took = std::chrono::duration<double>(Clock::now() - window_start).count();
    if (rate == 0 && window_done >= 4096 && took > 0) {
      frames_per_s = 0.5 * frames_per_s + 0.5 * (static_cast<double>(window_done) / took);
    }
    done += window_done;
    state->submitted.store(done, std::memory_order_relaxed);
  }
}

const char* const kFooter = R"(
Kinds (--mix KIND=WEIGHT,...; the weights are relative):
  syn        TCP SYN to --dport                    hostile in a flood
  ack        TCP ACK to --dport, no payload        looks like an established session
  data       TCP PSH+ACK to --dport, 32 bytes       looks like an established session
  rst        TCP RST to --dport                    hostile
  udp        UDP to port 53                        not SMTP
  frag       non-first fragment of a TCP segment   hostile (no ports to look at)
  malformed  TCP cut short inside its header        hostile
  --mix syn      is syn=1;  --mix mixed  is syn=40,ack=20,data=10,rst=10,udp=10,frag=5,malformed=5.

Sources (--sources, one spec per family, comma-separated):
  random           IPv4 128.0.0.0/2 and IPv6 2000::/3: every frame from a new global unicast
                   address (a spoofed flood)
  PREFIX/LEN       the bits after LEN drawn per frame, e.g. 198.18.0.0/15,2001:db8:f::/48
  ADDR             one fixed source, e.g. 198.51.100.7 (fixed:ADDR is the same)
  The TCP/UDP source port (1024-65535), the TCP sequence number and the IPv4 id are random per
  frame; the IPv4 header and TCP/UDP checksums are correct on every frame.

How frames are made: BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on --dev (root; Linux >= 5.18);
the frames leave through the device's ndo_xdp_xmit (veth, or a NIC driver that accepts XDP
redirects). The report counts frames handed to the device; on a veth, frames its peer's ring could
not take are in `ethtool -S DEV` as xdp_xmit_errors, and a device that took fewer frames than were
sent (a veth whose peer has no XDP program takes none) is reported with a WARNING. A veth pair
mxpgk<pid>/mxpgk<pid>p is created in the current namespace for the run (it keeps the program in the
kernel's XDP dispatcher, which saves ~20 ms per test run) and deleted at exit.

Progress goes to stderr once a second; --json FILE (- for stdout) writes the totals:
  {"sent": N, "seconds": S, "pps": R, "streams": [{"kind", "family", "sent", "frame_bytes"}...], ...}
Exit status: 0 done, 1 could not run, 2 usage.)";

int run(int argc, char** argv) {
  Options o;
  CLI::App app{"mxedge-pktgen: SYN floods and mixed traffic for mxedge's load tests, made with BPF_PROG_RUN live "
               "frames"};
  app.footer(kFooter);
  app.add_option("--dev", o.dev, "Device to send on (its ndo_xdp_xmit carries the frames)")->required();
  app.add_option("--dst", o.dst, "Destination address(es): IPv4, IPv6 or IPv4,IPv6")->required();
  app.add_option("--dst-mac", o.dst_mac, "Destination MAC (the gateway's port)")->required();
  app.add_option("--src-mac", o.src_mac, "Source MAC (default: --dev's own)");
  app.add_option("--dport", o.dport, "TCP destination port of the TCP kinds")->capture_default_str();
  app.add_option("--sources", o.sources, "random | PREFIX/LEN[,PREFIX6/LEN] | ADDR[,ADDR6] (see below)")
      ->capture_default_str();
  app.add_option("--family", o.family, "4, 6 or both")->check(CLI::IsMember({"4", "6", "both"}))->capture_default_str();
  app.add_option("--mix", o.mix, "syn | mixed | KIND=WEIGHT,... (see below)")->capture_default_str();
  app.add_option("--rate", o.rate, "Frames per second in all (0: as fast as the CPUs go)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--duration", o.duration, "Seconds to send (0: until --count or a signal)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--count", o.count, "Frames to send in all (0: no limit)");
  app.add_option("--threads", o.threads, "Sending threads, one per CPU of --cpus")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  app.add_option("--cpus", o.cpus, "CPUs for the threads, e.g. 1 or 0-3 (default: the last --threads CPUs)");
  app.add_option("--batch", o.batch, "Frames per test-run batch (1-256)")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  app.add_option("--json", o.json, "Write the totals as JSON to FILE (- for stdout)");
  app.add_flag("--quiet,-q", o.quiet, "No progress line");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  auto usage = [](const std::string& msg) {
    fmt::print(stderr, "mxedge-pktgen: {}\n", msg);
    return kExitUsage;
  };
  if (o.duration == 0 && o.count == 0) return usage("give --duration or --count (or both)");

  // Destinations by family.
  std::optional<Address> dst4, dst6;
  {
    std::string rest = o.dst;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      std::string one = rest.substr(0, comma);
      rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
      auto a = parse_address(one);
      if (!a) return usage(fmt::format("--dst: '{}' is not an IP address", one));
      (a->family == 4 ? dst4 : dst6) = a;
    }
  }
  const bool want4 = o.family != "6", want6 = o.family != "4";
  if (want4 && !dst4) return usage("--family includes IPv4 but --dst has no IPv4 address");
  if (want6 && !dst6) return usage("--family includes IPv6 but --dst has no IPv6 address");

  // Sources by family.
  SourceSpec src4, src6;
  src4.base = *parse_address("128.0.0.0");
  src4.prefix_len = 2;
  src6.base = *parse_address("2000::");
  src6.prefix_len = 3;
  if (o.sources != "random") {
    bool have4 = false, have6 = false;
    std::string rest = o.sources;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      std::string one = rest.substr(0, comma);
      rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
      if (one.rfind("fixed:", 0) == 0) one = one.substr(6);
      std::string error;
      auto s = parse_source(one, error);
      if (!s) return usage("--sources: " + error);
      (s->base.family == 4 ? src4 : src6) = *s;
      (s->base.family == 4 ? have4 : have6) = true;
    }
    if (want4 && !have4) return usage("--sources has no IPv4 source for --family 4/both");
    if (want6 && !have6) return usage("--sources has no IPv6 source for --family 6/both");
  }

  // The mix.
  std::string mix = o.mix == "syn"     ? "syn=1"
                    : o.mix == "mixed" ? "syn=40,ack=20,data=10,rst=10,udp=10,frag=5,malformed=5"
                                       : o.mix;
  std::vector<std::pair<std::string, double>> weights;
  {
    std::string rest = mix;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      std::string one = rest.substr(0, comma);
      rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
      auto eq = one.find('=');
      std::string kind = one.substr(0, eq);
      double w = 1;
      if (eq != std::string::npos) {
        char* end = nullptr;
        w = std::strtod(one.c_str() + eq + 1, &end);
        if (*end != '\0' || !(w >= 0) || std::isinf(w)) return usage(fmt::format("--mix: bad weight in '{}'", one));
      }
      bool known = std::any_of(std::begin(kKinds), std::end(kKinds), [&](const KindInfo& k) { return kind == k.name; });
      if (!known) return usage(fmt::format("--mix: unknown kind '{}' (see --help)", kind));
      if (w > 0) weights.emplace_back(kind, w);
    }
    if (weights.empty()) return usage("--mix: no kind with a positive weight");
  }

  const unsigned ifindex = if_nametoindex(o.dev.c_str());
  if (ifindex == 0) {
    fmt::print(stderr, "mxedge-pktgen: --dev {}: no such device\n", o.dev);
    return kExitFailed;
  }
  uint8_t dst_mac[6], src_mac[6];
  if (!parse_mac(o.dst_mac, dst_mac)) return usage("--dst-mac: expected xx:xx:xx:xx:xx:xx");
  std::string src_mac_text = o.src_mac.empty() ? read_first_line("/sys/class/net/" + o.dev + "/address") : o.src_mac;
  if (!parse_mac(src_mac_text, src_mac)) return usage("--src-mac: expected xx:xx:xx:xx:xx:xx");

  const long ncpus_online = sysconf(_SC_NPROCESSORS_ONLN);
  std::vector<int> cpus;
  if (o.cpus.empty()) {
    for (long c = std::max<long>(0, ncpus_online - o.threads); c < ncpus_online; c++) cpus.push_back(static_cast<int>(c));
  } else {
    auto list = parse_cpu_list(o.cpus);
    if (!list) return usage("--cpus: expected a list like 1 or 0-3,6");
    cpus = *list;
  }
  if (cpus.size() < o.threads) return usage(fmt::format("--cpus names {} CPUs for {} threads", cpus.size(), o.threads));
  cpus.resize(o.threads);
  for (int c : cpus) {
    if (c >= ncpus_online || c >= PKTGEN_MAX_CPUS) return usage(fmt::format("--cpus: CPU {} is not online", c));
  }
  const int ncpus_possible = libbpf_num_possible_cpus();

  // Streams: each kind once per family; a family's share is half of the kind's weight with both.
  Rewriter rewriter;
  if (std::string err = rewriter.open(); !err.empty()) {
    fmt::print(stderr, "mxedge-pktgen: {}\n", err);
    return kExitFailed;
  }
  std::vector<Stream> streams;
  for (const auto& [kind, w] : weights) {
    for (int fam : {4, 6}) {
      if ((fam == 4 && !want4) || (fam == 6 && !want6)) continue;
      if (streams.size() == size_t{PKTGEN_MAX_STREAMS}) return usage("--mix: too many streams");
      Stream st;
      st.kind = kind;
      st.family = fam;
      st.weight = w / ((want4 && want6) ? 2 : 1);
      st.index = static_cast<uint32_t>(streams.size());
      const SourceSpec& src = fam == 4 ? src4 : src6;
      st.frame = build_template(kind, src.base, fam == 4 ? *dst4 : *dst6, o.dport, dst_mac, src_mac);
      describe_stream(st, src, const_cast<pktgen_stream*>(&rewriter.skel()->rodata->streams[st.index]));
      streams.push_back(std::move(st));
    }
  }
  if (std::string err = rewriter.load(); !err.empty()) {
    fmt::print(stderr, "mxedge-pktgen: {}\n", err);
    return kExitFailed;
  }
  rewriter.keep_in_dispatcher();

  // Signals end the run (the threads finish their current test run); only the main thread gets
  // them, so a test run is never interrupted and the counts stay exact.
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);

  const std::string tx_path = "/sys/class/net/" + o.dev + "/statistics/tx_packets";
  const uint64_t tx_before = std::strtoull(read_first_line(tx_path).c_str(), nullptr, 10);
  const auto start = Clock::now();
  const auto until = o.duration > 0 ? start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration))
                                    : Clock::time_point::max();
  std::vector<std::unique_ptr<ThreadState>> states;
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < o.threads; t++) {
    states.push_back(std::make_unique<ThreadState>());
    uint64_t quota = o.count ? o.count / o.threads + (t < o.count % o.threads ? 1 : 0) : 0;
    if (o.count && quota == 0) continue;
    threads.emplace_back(sender, &streams, &rewriter, ifindex, cpus[t], o.rate / o.threads, until, quota, o.batch,
                         states.back().get());
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);

  auto submitted = [&] {
    uint64_t n = 0;
    for (const auto& s : states) n += s->submitted.load(std::memory_order_relaxed);
    return n;
  };
  uint64_t last = 0;
  auto last_t = start;
  std::atomic<bool> finished{false};
  std::thread joiner([&] {
    for (auto& t : threads) t.join();
    finished.store(true);
  });
  while (!finished.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto now = Clock::now();
    if (now - last_t >= std::chrono::seconds(1)) {
      const uint64_t n = submitted();
      const double dt = std::chrono::duration<double>(now - last_t).count();
      if (!o.quiet) {
        fmt::print(stderr, "t={:.0f}s sent={} pps={:.0f}\n", std::chrono::duration<double>(now - start).count(), n,
                   static_cast<double>(n - last) / dt);
      }
      last = n;
      last_t = now;
    }
  }
  joiner.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  std::string errors;
  for (const auto& s : states) {
    if (!s->error.empty()) errors += (errors.empty() ? "" : "; ") + s->error;
  }
  uint64_t sent = 0, short_frames = 0;
  std::string stream_json;
  for (const auto& st : streams) {
    StreamTotals t = read_totals(rewriter.stats_fd(), st, static_cast<unsigned>(ncpus_possible));
    sent += t.sent;
    short_frames += t.short_frames;
    stream_json += fmt::format("{}{{\"kind\": \"{}\", \"family\": {}, \"sent\": {}, \"frame_bytes\": {}}}",
                               stream_json.empty() ? "" : ", ", st.kind, st.family, t.sent, st.frame.bytes.size());
  }
  const double pps = seconds > 0 ? static_cast<double>(sent) / seconds : 0;
  // A device counts the frames its ndo_xdp_xmit queued in tx_packets (with whatever else it sent);
  // one that counts fewer than were sent refused some. A veth refuses every frame while its peer
  // has no XDP program (no NAPI to receive them) and those beyond its peer's ring when it is full;
  // neither shows in any counter of the kernel's, so it is said here.
  const uint64_t tx_after = std::strtoull(read_first_line(tx_path).c_str(), nullptr, 10);
  const uint64_t device_tx = tx_after - tx_before;
  if (device_tx < sent) {
    fmt::print(stderr,
               "mxedge-pktgen: WARNING: {} counted only {} frames sent of {}: the device refused {} (a veth does "
               "while its peer has no XDP program, or when the peer's ring is full)\n",
               o.dev, device_tx, sent, sent - device_tx);
  }
  fmt::print(stderr, "mxedge-pktgen: sent {} frames in {:.2f} s ({:.0f} pps) on {} from {} thread(s){}\n", sent, seconds,
             pps, o.dev, o.threads, short_frames ? fmt::format(", {} SHORT FRAMES DROPPED", short_frames) : "");
  if (!o.json.empty()) {
    const std::string json = fmt::format(
        "{{\"dev\": \"{}\", \"sent\": {}, \"requested\": {}, \"short_frames\": {}, \"seconds\": {:.3f}, "
        "\"pps\": {:.0f}, \"rate\": {}, \"threads\": {}, \"mix\": \"{}\", \"sources\": \"{}\", \"family\": \"{}\", "
        "\"device_tx_packets\": {}, \"streams\": [{}], \"error\": \"{}\"}}\n",
        o.dev, sent, submitted(), short_frames, seconds, pps, o.rate, o.threads, mix, o.sources, o.family, device_tx,
        stream_json, errors);
    if (o.json == "-") {
      fmt::print("{}", json);
    } else {
      FILE* f = std::fopen(o.json.c_str(), "w");
      if (!f || std::fputs(json.c_str(), f) < 0 || std::fclose(f) != 0) {
        fmt::print(stderr, "mxedge-pktgen: cannot write {}: {}\n", o.json, std::strerror(errno));
        return kExitFailed;
      }
    }
  }
  if (!errors.empty()) {
    fmt::print(stderr, "mxedge-pktgen: {}\n", errors);
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace
}  // namespace mxedge::pktgen

int main(int argc, char** argv) { return mxedge::pktgen::run(argc, argv); }
