#include "dataplane/dpdk/dpdk_fast_path.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <rte_bus_vdev.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_hash.h>
#include <rte_jhash.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>

#include "policy/log.h"

namespace mxedge::dpdk {

namespace {

std::string rte_error(int err) { return rte_strerror(err < 0 ? -err : err); }

std::mutex g_eal_mu;
bool g_eal_done = false;
Status g_eal_status;

uint32_t host_v4(const xdp::IpPrefix& p) {
  return (uint32_t{p.addr[0]} << 24) | (uint32_t{p.addr[1]} << 16) | (uint32_t{p.addr[2]} << 8) | p.addr[3];
}

constexpr unsigned kSweepBudget = 64;

}  // namespace

Status validate(const DpdkConfig& c) {
  if (c.ports.empty()) return Status::error(EINVAL, "dpdk.ports: no port");
  if (c.lcores.empty()) return Status::error(EINVAL, "dpdk.lcores: no lcore");
  if (c.lcores.size() > RTE_MAX_LCORE) return Status::error(EINVAL, "dpdk.lcores: too many");
  std::set<unsigned> seen;
  const long ncpu = ::sysconf(_SC_NPROCESSORS_ONLN);
  for (unsigned cpu : c.lcores) {
    if (!seen.insert(cpu).second) return Status::error(EINVAL, "dpdk.lcores: CPU " + std::to_string(cpu) + " twice");
    if (ncpu > 0 && cpu >= static_cast<unsigned>(ncpu))
      return Status::error(EINVAL, "dpdk.lcores: CPU " + std::to_string(cpu) + " does not exist");
  }
  if (c.burst == 0 || c.burst > 256) return Status::error(EINVAL, "dpdk.burst: not in 1..256");
  if (c.mbufs < 1024) return Status::error(EINVAL, "dpdk.mbufs: at least 1024");
  if (c.tap_prefix.empty() || c.tap_prefix.size() > 12) return Status::error(EINVAL, "dpdk.tap_prefix: 1..12 characters");
  return Status();
}

bool eal_ready() {
  std::lock_guard<std::mutex> lock(g_eal_mu);
  return g_eal_done && g_eal_status.ok();
}

Status init_eal(const std::vector<std::string>& eal_args, std::span<const unsigned> lcores) {
  std::lock_guard<std::mutex> lock(g_eal_mu);
  if (g_eal_done) return g_eal_status;
  g_eal_done = true;

  // The main lcore: the first CPU that is not a fast-path lcore (it runs nothing of ours).
  const long ncpu = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  unsigned main_lcore = 0;
  for (long cpu = 0; cpu < ncpu; ++cpu) {
    if (std::find(lcores.begin(), lcores.end(), static_cast<unsigned>(cpu)) == lcores.end()) {
      main_lcore = static_cast<unsigned>(cpu);
      break;
    }
  }
  // With every CPU a fast-path lcore, EAL's --lcores maps the main lcore id onto a CPU it shares.
  std::string lcore_map;
  const unsigned main_id = RTE_MAX_LCORE - 1;
  lcore_map = std::to_string(main_id) + "@" + std::to_string(main_lcore);
  for (unsigned cpu : lcores) lcore_map += "," + std::to_string(cpu);

  std::vector<std::string> args{"mxedge-dataplane"};
  args.insert(args.end(), eal_args.begin(), eal_args.end());
  args.insert(args.end(), {"--lcores", lcore_map, "--main-lcore", std::to_string(main_id)});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  cpu_set_t before;
  CPU_ZERO(&before);
  const bool have_affinity = ::pthread_getaffinity_np(::pthread_self(), sizeof before, &before) == 0;
  const int parsed = rte_eal_init(static_cast<int>(argv.size() - 1), argv.data());
  if (have_affinity) ::pthread_setaffinity_np(::pthread_self(), sizeof before, &before);
  if (parsed < 0) {
    std::string line;
    for (const auto& a : args) line += (line.empty() ? "" : " ") + a;
    g_eal_status = Status::error(rte_errno, "EAL init failed (" + rte_error(rte_errno) + "): " + line);
    return g_eal_status;
  }
  log::info("dpdk.eal_ready").kv("lcores", lcore_map).kv("ports", static_cast<uint64_t>(rte_eth_dev_count_avail()));
  g_eal_status = Status();
  return g_eal_status;
}

DpdkFastPath::DpdkFastPath() {
  static std::atomic<unsigned> instances{0};
  name_suffix_ = std::to_string(::getpid()) + "_" + std::to_string(instances.fetch_add(1));
}

DpdkFastPath::~DpdkFastPath() {
  stop();
  for (auto& side : sides_) {
    rte_lpm_free(side.source_v4);
    rte_lpm6_free(side.source_v6);
    rte_lpm_free(side.local_v4);
    rte_lpm6_free(side.local_v6);
  }
  for (auto& lc : lcores_) {
    rte_hash_free(lc->env.buckets);
    rte_free(lc->env.tat);
  }
  rte_free(qsbr_);
  if (mempool_ != nullptr) rte_mempool_free(mempool_);
}

Status DpdkFastPath::require_loaded(const char* what) const {
  if (!open_) return Status::error(EINVAL, std::string(what) + ": the DPDK fast path is not open");
  return Status();
}

Status DpdkFastPath::open(const DpdkOptions& options) {
  if (open_) return Status::error(EALREADY, "dpdk: already open");
  if (!eal_ready()) return Status::error(EINVAL, "dpdk: EAL is not initialised");
  if (options.lcores == 0 || options.lcores > RTE_MAX_LCORE) return Status::error(EINVAL, "dpdk: lcore count");
  options_ = options;
  const int socket = static_cast<int>(rte_socket_id());
  for (int i = 0; i < 2; ++i) {
    const std::string n = "_" + std::to_string(i) + "_" + name_suffix_;
    const auto lpm4 = [&](const char* kind, uint32_t rules, uint32_t tbl8) {
      rte_lpm_config c{};
      c.max_rules = rules;
      c.number_tbl8s = tbl8;
      return rte_lpm_create((kind + n).c_str(), socket, &c);
    };
    const auto lpm6 = [&](const char* kind, uint32_t rules, uint32_t tbl8) {
      rte_lpm6_config c{};
      c.max_rules = rules;
      c.number_tbl8s = tbl8;
      return rte_lpm6_create((kind + n).c_str(), socket, &c);
    };
    sides_[i].source_v4 = lpm4("mxs4", options.sizes.source_rules, options.sizes.source_tbl8_v4);
    sides_[i].source_v6 = lpm6("mxs6", options.sizes.source_rules_v6, options.sizes.source_tbl8_v6);
    sides_[i].local_v4 = lpm4("mxl4", options.sizes.local_rules, options.sizes.local_tbl8);
    sides_[i].local_v6 = lpm6("mxl6", options.sizes.local_rules, options.sizes.local_tbl8);
    if (!sides_[i].source_v4 || !sides_[i].source_v6 || !sides_[i].local_v4 || !sides_[i].local_v6)
      return Status::error(rte_errno ? rte_errno : ENOMEM, "dpdk: create LPM tables (" + rte_error(rte_errno) + ")");
  }
  const size_t qsize = rte_rcu_qsbr_get_memsize(options.lcores);
  qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc_socket("mxedge_qsbr", qsize, RTE_CACHE_LINE_SIZE, socket));
  if (qsbr_ == nullptr || rte_rcu_qsbr_init(qsbr_, options.lcores) != 0) return Status::error(ENOMEM, "dpdk: QSBR variable");

  for (unsigned i = 0; i < options.lcores; ++i) {
    auto lc = std::make_unique<Lcore>();
    lc->index = i;
    lc->owner = this;
    const std::string hname = "mxb" + std::to_string(i) + "_" + name_suffix_;
    rte_hash_parameters hp{};
    hp.name = hname.c_str();
    hp.entries = options.sizes.buckets_per_lcore;
    hp.key_len = sizeof(mxedge_rate_key);
    hp.hash_func = rte_jhash;
    hp.socket_id = socket;
    lc->env.buckets = rte_hash_create(&hp);
    lc->env.tat = static_cast<uint64_t*>(
        rte_zmalloc_socket("mxedge_tat", sizeof(uint64_t) * (hp.entries + 1), RTE_CACHE_LINE_SIZE, socket));
    if (lc->env.buckets == nullptr || lc->env.tat == nullptr)
      return Status::error(ENOMEM, "dpdk: SYN bucket table (" + rte_error(rte_errno) + ")");
    mxedge_dpdk_env_init_clock(&lc->env);
    lc->env.flow_hash_seed = options.flow_hash_seed;
    lc->env.test_clock = options.test_clock ? &test_clock_ns_ : nullptr;
    lc->env.side = &sides_[0];
    lcores_.push_back(std::move(lc));
  }
  active_.store(&sides_[0], std::memory_order_release);
  open_ = true;
  return Status();
}

// The writer's two-step: change the side no lcore reads, publish it, wait until every lcore has
// left its burst (so none still reads the old side), then make the same change to the old side.
template <typename F>
Status DpdkFastPath::change_both_sides(const char* what, F&& change) {
  if (auto s = require_loaded(what); !s.ok()) return s;
  const mxedge_dpdk_side* current = active_.load(std::memory_order_acquire);
  mxedge_dpdk_side* spare = current == &sides_[0] ? &sides_[1] : &sides_[0];
  if (auto s = change(*spare); !s.ok()) return s;
  active_.store(spare, std::memory_order_release);
  rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
  return change(*const_cast<mxedge_dpdk_side*>(current));
}

Status DpdkFastPath::write_config(const mxedge_config& config) {
  return change_both_sides("write_config", [&](mxedge_dpdk_side& side) {
    side.config = config;
    return Status();
  });
}

Status DpdkFastPath::write_source(const xdp::IpPrefix& p, uint32_t flags) {
  return change_both_sides("write_source", [&](mxedge_dpdk_side& side) {
    const int rc = p.is_ipv4() ? rte_lpm_add(side.source_v4, host_v4(p), p.length, flags)
                               : rte_lpm6_add(side.source_v6, p.addr.data(), p.length, flags);
    if (rc < 0) return Status::error(-rc, "source lists: write " + p.to_string() + " (" + rte_error(rc) + ")");
    return Status();
  });
}

Status DpdkFastPath::delete_source(const xdp::IpPrefix& p) {
  return change_both_sides("delete_source", [&](mxedge_dpdk_side& side) {
    const int rc = p.is_ipv4() ? rte_lpm_delete(side.source_v4, host_v4(p), p.length)
                               : rte_lpm6_delete(side.source_v6, p.addr.data(), p.length);
    if (rc < 0 && rc != -EINVAL && rc != -ENOENT)
      return Status::error(-rc, "source lists: remove " + p.to_string() + " (" + rte_error(rc) + ")");
    return Status();
  });
}

Status DpdkFastPath::write_local(const xdp::IpPrefix& p) {
  Status s = change_both_sides("write_local", [&](mxedge_dpdk_side& side) {
    const int rc = p.is_ipv4() ? rte_lpm_add(side.local_v4, host_v4(p), p.length, 1)
                               : rte_lpm6_add(side.local_v6, p.addr.data(), p.length, 1);
    if (rc < 0) return Status::error(-rc, "local addresses: add " + p.to_string() + " (" + rte_error(rc) + ")");
    return Status();
  });
  if (s.ok()) local_.insert(p);
  return s;
}

Status DpdkFastPath::delete_local(const xdp::IpPrefix& p) {
  Status s = change_both_sides("delete_local", [&](mxedge_dpdk_side& side) {
    const int rc = p.is_ipv4() ? rte_lpm_delete(side.local_v4, host_v4(p), p.length)
                               : rte_lpm6_delete(side.local_v6, p.addr.data(), p.length);
    if (rc < 0 && rc != -EINVAL && rc != -ENOENT)
      return Status::error(-rc, "local addresses: remove " + p.to_string() + " (" + rte_error(rc) + ")");
    return Status();
  });
  if (s.ok()) local_.erase(p);
  return s;
}

Status DpdkFastPath::list_local(std::vector<xdp::IpPrefix>* out) const {
  out->assign(local_.begin(), local_.end());
  return Status();
}

// Worker queues are the TAP queues made at start(); nothing to create or retire per worker set.
Status DpdkFastPath::prepare_workers(std::span<const unsigned>, uint32_t) { return Status(); }
Status DpdkFastPath::retire_workers(std::span<const unsigned>) { return Status(); }

Status DpdkFastPath::read_counters(xdp::XdpCounters* out) const {
  if (auto s = require_loaded("read_counters"); !s.ok()) return s;
  out->total = {};
  unsigned max_cpu = 0;
  for (const auto& lc : lcores_) max_cpu = std::max(max_cpu, lc->cpu);
  out->per_cpu.assign(max_cpu + 1, xdp::CounterSet{});
  for (const auto& lc : lcores_) {
    for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i) {
      const uint64_t packets = __atomic_load_n(&lc->counters.ctr[i].packets, __ATOMIC_RELAXED) - lc->baseline.ctr[i].packets;
      const uint64_t bytes = __atomic_load_n(&lc->counters.ctr[i].bytes, __ATOMIC_RELAXED) - lc->baseline.ctr[i].bytes;
      out->per_cpu[lc->cpu][i].packets += packets;
      out->per_cpu[lc->cpu][i].bytes += bytes;
      out->total[i].packets += packets;
      out->total[i].bytes += bytes;
    }
  }
  return Status();
}

// The lcores own their counters; a reset records the current values as the new zero, so it is
// exact even while frames flow.
Status DpdkFastPath::reset_counters() {
  if (auto s = require_loaded("reset_counters"); !s.ok()) return s;
  for (auto& lc : lcores_) {
    for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i) {
      lc->baseline.ctr[i].packets = __atomic_load_n(&lc->counters.ctr[i].packets, __ATOMIC_RELAXED);
      lc->baseline.ctr[i].bytes = __atomic_load_n(&lc->counters.ctr[i].bytes, __ATOMIC_RELAXED);
    }
  }
  return Status();
}

std::vector<xdp::Attachment> DpdkFastPath::attachments() const {
  std::vector<xdp::Attachment> out;
  for (const auto& p : ports_) {
    xdp::Attachment a;
    a.ifname = p.name + " (tap " + p.tap + ")";
    a.ifindex = p.port_id;
    a.native = true;
    out.push_back(a);
  }
  return out;
}

std::vector<LcoreStats> DpdkFastPath::lcore_stats() const {
  std::vector<LcoreStats> out;
  for (const auto& lc : lcores_) {
    LcoreStats s;
    s.cpu = lc->cpu;
    s.rx_wire = __atomic_load_n(&lc->stats.rx_wire, __ATOMIC_RELAXED);
    s.rx_kernel = __atomic_load_n(&lc->stats.rx_kernel, __ATOMIC_RELAXED);
    s.tap_tx_dropped = __atomic_load_n(&lc->stats.tap_tx_dropped, __ATOMIC_RELAXED);
    s.wire_tx_dropped = __atomic_load_n(&lc->stats.wire_tx_dropped, __ATOMIC_RELAXED);
    s.buckets_full = __atomic_load_n(&lc->env.buckets_full, __ATOMIC_RELAXED);
    s.buckets_swept = __atomic_load_n(&lc->env.buckets_swept, __ATOMIC_RELAXED);
    out.push_back(s);
  }
  return out;
}

void DpdkFastPath::classify(unsigned lcore, const void* frame, uint32_t length, mxedge_verdict* verdict) {
  Lcore& lc = *lcores_.at(lcore);
  lc.env.side = active_.load(std::memory_order_acquire);
  mxedge_dpdk_classify(&lc.env, frame, length, verdict);
}

namespace {

// The lcore is the only writer; readers on other threads load atomically, so it stores atomically
// (a plain load and add, then a relaxed store: no locked instruction).
template <typename T>
inline void bump(T& v, uint64_t by) { __atomic_store_n(&v, static_cast<T>(v + by), __ATOMIC_RELAXED); }

inline void count(mxedge_counters& c, unsigned index, uint32_t bytes) {
  bump(c.ctr[index].packets, 1);
  bump(c.ctr[index].bytes, bytes);
}

// Sends what fits and frees the rest; returns how many were freed.
inline uint16_t send_or_free(uint16_t port, uint16_t queue, rte_mbuf** pkts, uint16_t n) {
  if (n == 0) return 0;
  const uint16_t sent = rte_eth_tx_burst(port, queue, pkts, n);
  for (uint16_t i = sent; i < n; ++i) rte_pktmbuf_free(pkts[i]);
  return static_cast<uint16_t>(n - sent);
}

}  // namespace

void DpdkFastPath::run(Lcore& lc) {
  rte_rcu_qsbr_thread_register(qsbr_, lc.index);
  rte_rcu_qsbr_thread_online(qsbr_, lc.index);
  const uint16_t burst = lc.burst;
  std::vector<rte_mbuf*> rx(burst);
  std::vector<mxedge_verdict> verdicts(burst);
  // Per port, per TAP queue: the frames of this burst bound there.
  std::vector<std::vector<std::vector<rte_mbuf*>>> out(lc.queues.tap.size());
  for (size_t p = 0; p < lc.queues.tap.size(); ++p) {
    out[p].assign(std::max<size_t>(1, lc.queues.tap[p].size()), {});
    for (auto& v : out[p]) v.reserve(burst);
  }
  while (!stopping_.load(std::memory_order_relaxed)) {
    lc.env.side = active_.load(std::memory_order_acquire);
    bool idle = true;
    for (size_t p = 0; p < lc.queues.wire_rx.size(); ++p) {
      const Queue& in = lc.queues.wire_rx[p];
      const uint16_t n = rte_eth_rx_burst(in.port, in.queue, rx.data(), burst);
      if (n != 0) {
        idle = false;
        bump(lc.stats.rx_wire, n);
        mxedge_dpdk_classify_burst(&lc.env, rx.data(), n, verdicts.data());
        const auto& taps = lc.queues.tap[p];
        const uint32_t nq = static_cast<uint32_t>(taps.size());
        for (uint16_t i = 0; i < n; ++i) {
          const mxedge_verdict& v = verdicts[i];
          const uint32_t len = rte_pktmbuf_pkt_len(rx[i]);
          if (v.allowlisted) count(lc.counters, MXEDGE_CTR_ALLOWLISTED, len);
          if (v.action == MXEDGE_ACT_DROP || nq == 0) {
            count(lc.counters, v.action == MXEDGE_ACT_DROP ? v.counter : static_cast<uint32_t>(MXEDGE_CTR_PASS_NO_WORKER), len);
            rte_pktmbuf_free(rx[i]);
            continue;
          }
          uint32_t q = 0;
          unsigned counter = v.counter;
          if (v.action == MXEDGE_ACT_STEER) {
            if (v.worker < nq) q = v.worker;
            else counter = MXEDGE_CTR_PASS_NO_WORKER;  // a worker the TAP device has no queue for
          }
          count(lc.counters, counter, len);
          out[p][q].push_back(rx[i]);
        }
        for (uint32_t q = 0; q < nq; ++q) {
          auto& v = out[p][q];
          bump(lc.stats.tap_tx_dropped, send_or_free(taps[q].port, taps[q].queue, v.data(), static_cast<uint16_t>(v.size())));
          v.clear();
        }
      }
      // The kernel's frames for this port: from each of this lcore's TAP queues to the port.
      const Queue& wire_out = lc.queues.wire_tx[p];
      for (const Queue& t : lc.queues.tap[p]) {
        const uint16_t k = rte_eth_rx_burst(t.port, t.queue, rx.data(), burst);
        if (k == 0) continue;
        idle = false;
        bump(lc.stats.rx_kernel, k);
        bump(lc.stats.wire_tx_dropped, send_or_free(wire_out.port, wire_out.queue, rx.data(), k));
      }
    }
    rte_rcu_qsbr_quiescent(qsbr_, lc.index);
    if (idle) mxedge_dpdk_sweep_buckets(&lc.env, kSweepBudget);
  }
  rte_rcu_qsbr_thread_offline(qsbr_, lc.index);
  rte_rcu_qsbr_thread_unregister(qsbr_, lc.index);
}

int DpdkFastPath::lcore_main(void* arg) {
  auto* lc = static_cast<Lcore*>(arg);
  lc->owner->run(*lc);
  return 0;
}

Status DpdkFastPath::launch(std::span<const unsigned> cpus, std::vector<LcoreQueues> queues, uint16_t burst) {
  if (auto s = require_loaded("launch"); !s.ok()) return s;
  if (cpus.size() > lcores_.size() || queues.size() != cpus.size())
    return Status::error(EINVAL, "dpdk: more lcores than lcore states, or queues not one per lcore");
  stopping_.store(false);
  for (size_t i = 0; i < cpus.size(); ++i) {
    Lcore& lc = *lcores_[i];
    lc.cpu = cpus[i];
    lc.queues = std::move(queues[i]);
    lc.burst = burst;
    const int rc = rte_eal_remote_launch(&DpdkFastPath::lcore_main, &lc, cpus[i]);
    if (rc != 0) {
      stop();
      return Status::error(-rc, "dpdk: launch lcore " + std::to_string(cpus[i]) + " (" + rte_error(rc) +
                                    "; is it in the EAL lcore list and idle?)");
    }
    lc.launched = true;
  }
  return Status();
}

void DpdkFastPath::set_rps(const PortInfo& port, unsigned lcores, unsigned workers) {
  for (unsigned l = 0; l < lcores; ++l) {
    for (unsigned w = 0; w < workers; ++w) {
      const unsigned q = l * workers + w;
      const unsigned cpu = config_.worker_cpus[w];
      const std::string path = "/sys/class/net/" + port.tap + "/queues/rx-" + std::to_string(q) + "/rps_cpus";
      // A hex mask, 32-bit words separated by commas, least significant last.
      std::string mask;
      for (int word = static_cast<int>(cpu / 32); word >= 0; --word) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%08x", word == static_cast<int>(cpu / 32) ? 1u << (cpu % 32) : 0u);
        mask += (mask.empty() ? "" : ",") + std::string(buf);
      }
      std::ofstream f(path);
      f << mask << "\n";
      f.close();
      if (!f) log::warning("dpdk.rps_failed").kv("path", path).kv("cpu", cpu);
    }
  }
}

Status DpdkFastPath::setup_port(size_t index, const std::string& name, const DpdkConfig& dpdk, unsigned workers) {
  PortInfo info;
  info.name = name;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &info.port_id) != 0)
    return Status::error(ENODEV, "dpdk.ports: no DPDK port named '" + name + "' (check eal_args: --vdev, -a, and that the device is bound to a DPDK driver)");
  const uint16_t nl = static_cast<uint16_t>(dpdk.lcores.size());

  rte_eth_dev_info dev{};
  if (int rc = rte_eth_dev_info_get(info.port_id, &dev); rc != 0) return Status::error(-rc, "dpdk: port info of " + name);
  if (dev.max_rx_queues < nl || dev.max_tx_queues < nl)
    return Status::error(EINVAL, "dpdk: port " + name + " has " + std::to_string(dev.max_rx_queues) + " receive queues, " +
                                     std::to_string(nl) + " lcores need one each");
  rte_eth_conf conf{};
  if (nl > 1 && (dev.flow_type_rss_offloads & RTE_ETH_RSS_IP) != 0) {
    // Spread by IP addresses only, so one source lands on one lcore and its SYN bucket is exact.
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = RTE_ETH_RSS_IP & dev.flow_type_rss_offloads;
  }
  if (int rc = rte_eth_dev_configure(info.port_id, nl, nl, &conf); rc != 0)
    return Status::error(-rc, "dpdk: configure " + name + " (" + rte_error(rc) + ")");
  uint16_t nrx = dpdk.rx_descriptors, ntx = dpdk.tx_descriptors;
  rte_eth_dev_adjust_nb_rx_tx_desc(info.port_id, &nrx, &ntx);
  const int socket = rte_eth_dev_socket_id(info.port_id) < 0 ? 0 : rte_eth_dev_socket_id(info.port_id);
  for (uint16_t q = 0; q < nl; ++q) {
    if (int rc = rte_eth_rx_queue_setup(info.port_id, q, nrx, socket, nullptr, mempool_); rc != 0)
      return Status::error(-rc, "dpdk: rx queue of " + name + " (" + rte_error(rc) + ")");
    if (int rc = rte_eth_tx_queue_setup(info.port_id, q, ntx, socket, nullptr); rc != 0)
      return Status::error(-rc, "dpdk: tx queue of " + name + " (" + rte_error(rc) + ")");
  }
  if (int rc = rte_eth_dev_start(info.port_id); rc != 0) return Status::error(-rc, "dpdk: start " + name + " (" + rte_error(rc) + ")");
  rte_eth_promiscuous_enable(info.port_id);  // not every PMD can; the TAP copy of the MAC is what matters
  rte_ether_addr mac{};
  rte_eth_macaddr_get(info.port_id, &mac);
  char mac_text[RTE_ETHER_ADDR_FMT_SIZE];
  rte_ether_format_addr(mac_text, sizeof mac_text, &mac);

  // The kernel side: a TAP device with the port's MAC, one queue per (lcore, worker).
  info.tap = dpdk.tap_prefix + std::to_string(index);
  // Kept short: the TAP PMD names its GSO mbuf pool "mp_<device name>", and a mempool name has at
  // most RTE_MEMPOOL_NAMESIZE - 1 = 25 characters, so the device name must fit in 22 ("net_tap" +
  // index + "_" + pid (up to 7 digits) + "_" + instance). "net_tap_mxedge<i>_<pid>_<n>" was 23 with a
  // 5-digit pid, and TX queue setup failed ("failed to create mbuf pool", EPERM).
  const std::string vdev = "net_tap" + std::to_string(index) + "_" + name_suffix_;
  const std::string vargs = "iface=" + info.tap + ",mac=" + mac_text;
  if (int rc = rte_vdev_init(vdev.c_str(), vargs.c_str()); rc != 0)
    return Status::error(-rc, "dpdk: create TAP device " + info.tap + " (" + rte_error(rc) + ")");
  if (rte_eth_dev_get_port_by_name(vdev.c_str(), &info.tap_port_id) != 0) return Status::error(ENODEV, "dpdk: TAP port " + vdev);
  info.tap_vdev = vdev;
  ports_.push_back(info);  // from here stop() removes it
  PortInfo& p = ports_.back();
  const uint16_t nq = static_cast<uint16_t>(nl * workers);
  rte_eth_dev_info tdev{};
  rte_eth_dev_info_get(p.tap_port_id, &tdev);
  if (tdev.max_rx_queues < nq)
    return Status::error(EINVAL, "dpdk: the TAP device takes " + std::to_string(tdev.max_rx_queues) + " queues; " +
                                     std::to_string(nl) + " lcores x " + std::to_string(workers) + " workers need " + std::to_string(nq));
  rte_eth_conf tconf{};
  if (int rc = rte_eth_dev_configure(p.tap_port_id, nq, nq, &tconf); rc != 0)
    return Status::error(-rc, "dpdk: configure TAP " + p.tap + " (" + rte_error(rc) + ")");
  for (uint16_t q = 0; q < nq; ++q) {
    if (int rc = rte_eth_rx_queue_setup(p.tap_port_id, q, 512, socket, nullptr, mempool_); rc != 0)
      return Status::error(-rc, "dpdk: TAP rx queue (" + rte_error(rc) + ")");
    if (int rc = rte_eth_tx_queue_setup(p.tap_port_id, q, 512, socket, nullptr); rc != 0)
      return Status::error(-rc, "dpdk: TAP tx queue (" + rte_error(rc) + ")");
  }
  if (int rc = rte_eth_dev_start(p.tap_port_id); rc != 0) return Status::error(-rc, "dpdk: start TAP " + p.tap + " (" + rte_error(rc) + ")");
  p.tap_queues = nq;
  set_rps(p, nl, workers);
  log::info("dpdk.port_ready").kv("port", name).kv("port_id", p.port_id).kv("mac", mac_text).kv("tap", p.tap)
      .kv("tap_queues", nq).kv("rx_queues", nl);
  return Status();
}

Status DpdkFastPath::start(const xdp::XdpConfig& classifier, const DpdkConfig& dpdk) {
  if (auto s = xdp::validate(classifier); !s.ok()) return s;
  if (auto s = validate(dpdk); !s.ok()) return s;
  if (auto s = init_eal(dpdk.eal_args, dpdk.lcores); !s.ok()) return s;
  DpdkOptions options;
  options.flow_hash_seed = classifier.flow_hash_seed;
  options.lcores = static_cast<unsigned>(dpdk.lcores.size());
  if (auto s = open(options); !s.ok()) return s;
  if (auto s = apply(classifier); !s.ok()) return s;

  const std::string pool = "mxedge_mbufs_" + name_suffix_;
  mempool_ = rte_pktmbuf_pool_create(pool.c_str(), dpdk.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
  if (mempool_ == nullptr) return Status::error(rte_errno, "dpdk: mbuf pool of " + std::to_string(dpdk.mbufs) + " (" + rte_error(rte_errno) + "; EAL memory, -m?)");

  const unsigned workers = std::max<unsigned>(1, config_.worker_count);
  for (size_t i = 0; i < dpdk.ports.size(); ++i) {
    if (auto s = setup_port(i, dpdk.ports[i], dpdk, workers); !s.ok()) {
      stop();
      return s;
    }
  }
  std::vector<LcoreQueues> queues(dpdk.lcores.size());
  for (size_t l = 0; l < dpdk.lcores.size(); ++l) {
    for (const auto& p : ports_) {
      queues[l].wire_rx.push_back({p.port_id, static_cast<uint16_t>(l)});
      queues[l].wire_tx.push_back({p.port_id, static_cast<uint16_t>(l)});
      std::vector<Queue> taps;
      for (unsigned w = 0; w < workers; ++w) taps.push_back({p.tap_port_id, static_cast<uint16_t>(l * workers + w)});
      queues[l].tap.push_back(std::move(taps));
    }
  }
  return launch(dpdk.lcores, std::move(queues), dpdk.burst);
}

void DpdkFastPath::stop() {
  stopping_.store(true);
  for (auto& lc : lcores_) {
    if (!lc->launched) continue;
    rte_eal_wait_lcore(lc->cpu);
    lc->launched = false;
  }
  for (auto it = ports_.rbegin(); it != ports_.rend(); ++it) {
    rte_eth_dev_stop(it->tap_port_id);
    rte_eth_dev_close(it->tap_port_id);
    rte_vdev_uninit(it->tap_vdev.c_str());
    rte_eth_dev_stop(it->port_id);
  }
  ports_.clear();
}

}  // namespace mxedge::dpdk
