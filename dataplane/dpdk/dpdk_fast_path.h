// The DPDK fast path: the XDP program's classifier (bpf/classifier.h, compiled for DPDK in
// classifier_env.c) on DPDK-bound ports, with the kernel TCP stack behind it through TAP devices.
//
//   port (NIC or vdev) --RX burst--> classify --drop--> freed, counted
//                                         \--pass/steer--> TAP queue --> kernel TCP --> TLS pool
//   port <--TX burst-- TAP queue <-- kernel (replies, anything the host sends)
//
// Each port gets one TAP device (<tap_prefix><port index>) with the port's MAC address and one
// queue per (lcore, worker): a flow steered to worker w by lcore l is written to queue l*W + w, and
// that queue's receive processing in the kernel (RPS) runs on worker w's CPU, where the SK_REUSEPORT
// selector hands the connection to the worker pinned there: the same result as the XDP program's
// cpumap redirect. Passed (non-SMTP, or steering off) traffic goes to the lcore's first queue.
//
// The data-plane API (lists, rate limit, ports, local addresses, workers, steering, counters) is
// FastPath's, shared with XdpProgram; this class stores it in DPDK tables (classifier_env.h
// describes them and how lcores read them without locks while the API writes them).
//
// Threads: the owner thread calls the API; one lcore thread per configured lcore runs the burst
// loop. EAL is initialised once per process (init_eal) before any DpdkFastPath is opened.
//
// SECURITY: DPDK needs root (or CAP_SYS_ADMIN/CAP_NET_ADMIN/CAP_IPC_LOCK with vfio) to own the ports
// and create TAP devices; the lcores parse unauthenticated frames with the classifier's
// bounds-checked parsers (fuzzed as fuzz_packet_classifier).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/dpdk/classifier_env.h"
#include "dataplane/xdp/fast_path.h"
#include "dataplane/xdp/xdp_config.h"

struct rte_mempool;
struct rte_rcu_qsbr;

namespace mxedge::dpdk {

using xdp::Status;

struct DpdkConfig {
  std::vector<std::string> eal_args;  // without the lcore list: that comes from `lcores`
  std::vector<std::string> ports;     // DPDK device names
  std::vector<unsigned> lcores;       // CPU ids of the burst-loop lcores
  std::string tap_prefix = "mxtap";
  uint32_t mbufs = 8191;
  uint16_t burst = 32;
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
};

// Checks what a DPDK config can get wrong before EAL is touched; the context names the field.
Status validate(const DpdkConfig& config);

// Initialises EAL once per process: eal_args plus "-l <main>,<lcores>" "--main-lcore <main>", where
// the main lcore is a CPU that is not a fast-path lcore (the calling thread's affinity is restored
// afterwards: EAL pins it, and every thread it starts later would inherit that). Later calls
// return the first call's result.
Status init_eal(const std::vector<std::string>& eal_args, std::span<const unsigned> lcores);
bool eal_ready();

// Table capacities (memory: each rte_lpm is 64 MiB of tbl24 whatever its rules; there are two
// sides of four tables).
struct TableSizes {
  uint32_t source_rules = MXEDGE_SOURCE_PREFIX_ENTRIES;
  uint32_t source_tbl8_v4 = 4096;  // IPv4 source prefixes longer than /24: in at most this many /24s
  uint32_t source_rules_v6 = 16384;
  uint32_t source_tbl8_v6 = 16384;
  uint32_t local_rules = MXEDGE_LOCAL_PREFIX_ENTRIES;
  uint32_t local_tbl8 = 256;
  uint32_t buckets_per_lcore = MXEDGE_RATE_BUCKETS;
};

struct DpdkOptions {
  uint32_t flow_hash_seed = 0x6d786467;
  bool test_clock = false;  // tests only: buckets read set_test_clock() instead of the TSC
  unsigned lcores = 1;      // lcore states (bucket tables, counters) to create
  TableSizes sizes;
};

// Per lcore, beside the classifier's counters.
struct LcoreStats {
  unsigned cpu = 0;
  uint64_t rx_wire = 0;           // frames received from the ports
  uint64_t rx_kernel = 0;         // frames received from the TAP queues (to the ports)
  uint64_t tap_tx_dropped = 0;    // classified frames the TAP queue did not take
  uint64_t wire_tx_dropped = 0;   // kernel frames the port did not take
  uint64_t buckets_full = 0;      // new sources admitted without a bucket (table full)
  uint64_t buckets_swept = 0;     // expired buckets removed
};

struct PortInfo {
  std::string name;      // the DPDK device name
  uint16_t port_id = 0;
  std::string tap;       // the kernel-side TAP interface
  std::string tap_vdev;  // its DPDK device name
  uint16_t tap_port_id = 0;
  uint16_t tap_queues = 0;
};

class DpdkFastPath : public xdp::FastPath {
 public:
  DpdkFastPath();
  ~DpdkFastPath() override;
  DpdkFastPath(const DpdkFastPath&) = delete;
  DpdkFastPath& operator=(const DpdkFastPath&) = delete;

  const char* kind() const override { return "dpdk"; }

  // Creates the tables and lcore states (needs init_eal). No port is touched.
  Status open(const DpdkOptions& options = {});
  // validate, init_eal, open, apply the classifier settings, set up every port and its TAP device,
  // launch the lcores. Stops at the first error (and undoes what it did).
  Status start(const xdp::XdpConfig& classifier, const DpdkConfig& dpdk);
  // Stops the lcores, then the ports, and removes the TAP devices. Also run by the destructor.
  void stop();

  Status read_counters(xdp::XdpCounters* out) const override;
  Status reset_counters() override;
  std::vector<xdp::Attachment> attachments() const override;
  std::vector<LcoreStats> lcore_stats() const;
  const std::vector<PortInfo>& ports() const { return ports_; }

  // Tests and benchmarks: classify a frame on lcore state `lcore` from the calling thread (which
  // must not race that lcore's thread), and the test clock.
  void classify(unsigned lcore, const void* frame, uint32_t length, mxedge_verdict* verdict);
  void set_test_clock(uint64_t ns) { test_clock_ns_ = ns; }

  // The burst loop of lcore state `index` until stop() (public for the benchmark, which drives
  // ports of its own through run_ports()).
  struct Queue {
    uint16_t port = 0;
    uint16_t queue = 0;
  };
  struct LcoreQueues {
    std::vector<Queue> wire_rx;               // per port: (port, rx queue)
    std::vector<Queue> wire_tx;               // per port: (port, tx queue) for kernel frames
    std::vector<std::vector<Queue>> tap;      // per port: this lcore's TAP queues, worker order
  };
  // Launches lcore state i on EAL lcore (CPU) cpus[i] with the given queues (the benchmark's
  // entry; start() uses it for the ports it set up).
  Status launch(std::span<const unsigned> cpus, std::vector<LcoreQueues> queues, uint16_t burst);
  rte_mempool* mempool() const { return mempool_; }

 protected:
  Status require_loaded(const char* what) const override;
  Status write_config(const mxedge_config& config) override;
  Status write_source(const xdp::IpPrefix& p, uint32_t flags) override;
  Status delete_source(const xdp::IpPrefix& p) override;
  Status write_local(const xdp::IpPrefix& p) override;
  Status delete_local(const xdp::IpPrefix& p) override;
  Status list_local(std::vector<xdp::IpPrefix>* out) const override;
  Status prepare_workers(std::span<const unsigned> cpus, uint32_t qsize) override;
  Status retire_workers(std::span<const unsigned> cpus) override;

 private:
  struct alignas(64) Lcore {
    mxedge_env env{};
    mxedge_counters counters{};  // written by the lcore only
    mxedge_counters baseline{};  // the values at the last reset_counters() (owner thread)
    LcoreStats stats;
    LcoreQueues queues;
    uint16_t burst = 32;
    unsigned cpu = 0;
    unsigned index = 0;
    bool launched = false;
    DpdkFastPath* owner = nullptr;
  };

  template <typename F>
  Status change_both_sides(const char* what, F&& change);
  Status setup_port(size_t index, const std::string& name, const DpdkConfig& dpdk, unsigned workers);
  void set_rps(const PortInfo& port, unsigned lcores, unsigned workers);
  static int lcore_main(void* arg);
  void run(Lcore& lc);

  DpdkOptions options_;
  bool open_ = false;
  mxedge_dpdk_side sides_[2]{};
  std::atomic<const mxedge_dpdk_side*> active_{nullptr};
  rte_rcu_qsbr* qsbr_ = nullptr;
  std::vector<std::unique_ptr<Lcore>> lcores_;
  std::atomic<bool> stopping_{false};
  volatile uint64_t test_clock_ns_ = 0;
  rte_mempool* mempool_ = nullptr;
  std::vector<PortInfo> ports_;
  std::set<xdp::IpPrefix> local_;  // rte_lpm cannot be listed
  std::string name_suffix_;        // makes table names unique per instance
};

}  // namespace mxedge::dpdk
