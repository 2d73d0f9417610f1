// mxedge-dataplane: loads the configuration, binds the listeners (one SO_REUSEPORT socket per
// listener per worker), recovers the spool, starts one pinned worker per configured core, and then
// waits for signals: SIGHUP reloads the configuration (certificates, limits, domains, next hop) without
// dropping connections; SIGTERM/SIGINT stop accepting, let sessions finish within a grace period, and
// exit with every acknowledged message still in the spool.
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <ctime>
#include <cstring>
#include <iostream>
#include <mutex>
#include <sstream>

#include "dataplane/admin/admin.h"
#include "dataplane/policy/policy_client.h"
#include "dataplane/policy/policy_store.h"
#include "dataplane/spool/spool.h"
#include "dataplane/stats/prometheus.h"
#include "dataplane/stats/stats_server.h"
#include "dataplane/worker/runtime_config.h"
#include "dataplane/worker/worker.h"
#include "dataplane/dpdk/dpdk_fast_path.h"
#include "dataplane/xdp/libbpf_support.h"
#include "dataplane/xdp/reuseport_selector.h"
#include "dataplane/xdp/xdp_program.h"
#include "policy/config_loader.h"
#include "policy/log.h"
#include "policy/mgmt_socket.h"
#include "policy/privileges.h"
#include "policy/service_notify.h"

namespace {

using namespace mxedge;

constexpr const char* kVersion = "0.1.0";

int bind_listener(const SocketAddress& addr, std::string* error) {
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (addr.family() == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, addr.get(), addr.length) != 0 || ::listen(fd, 4096) != 0) {
    *error = "cannot listen on " + addr.to_string() + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

void apply_logging(const config::v1::Config& c) {
  log::configure(c.logging().format() == config::v1::LOG_FORMAT_JSON ? log::Format::kJson : log::Format::kLogfmt,
                 static_cast<log::Level>(std::max(0, static_cast<int>(c.logging().level()) - 1)));
}

spool::SpoolOptions spool_options(const config::v1::Config& c) {
  spool::SpoolOptions o;
  o.directory = c.spool().directory();
  o.memory_body_limit = c.spool().memory_body_limit();
  o.min_free_bytes = c.spool().min_free_bytes();
  o.segment_size = c.spool().segment_size();
  return o;
}

xdp::XdpConfig xdp_config(const config::v1::Config& c) {
  const auto& x = c.xdp();
  xdp::XdpConfig xc;
  xc.interfaces.assign(x.interfaces().begin(), x.interfaces().end());
  xc.attach_mode = x.attach_mode() == config::v1::XDP_ATTACH_MODE_NATIVE    ? xdp::AttachMode::kNative
                   : x.attach_mode() == config::v1::XDP_ATTACH_MODE_GENERIC ? xdp::AttachMode::kGeneric
                                                                            : xdp::AttachMode::kNativeOrGeneric;
  xc.pin_dir = x.pin_dir();
  xc.smtp_ports.assign(x.smtp_ports().begin(), x.smtp_ports().end());
  xc.local_addresses.assign(x.local_addresses().begin(), x.local_addresses().end());
  xc.allowlist.assign(x.allowlist().begin(), x.allowlist().end());
  xc.blocklist.assign(x.blocklist().begin(), x.blocklist().end());
  xc.syn_rate = x.syn_rate();
  xc.syn_burst = x.syn_burst();
  xc.new_source_syn_rate = x.new_source_syn_rate();
  xc.new_source_syn_burst = x.new_source_syn_burst();
  xc.steering = x.steering();
  xc.worker_cpus.assign(c.workers().cores().begin(), c.workers().cores().end());
  xc.cpumap_qsize = x.cpumap_qsize();
  return xc;
}

// The XDP counters as Prometheus families: packets and bytes per reason, per CPU.
void render_xdp(stats::PrometheusText& out, const xdp::FastPath& program) {
  xdp::XdpCounters counters;
  if (!program.read_counters(&counters).ok()) return;
  out.counter("xdp_packets_total", "Packets seen by the XDP program, by verdict reason and CPU");
  for (size_t cpu = 0; cpu < counters.per_cpu.size(); ++cpu) {
    for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i) {
      if (counters.per_cpu[cpu][i].packets == 0) continue;
      out.sample("xdp_packets_total", "reason=\"" + xdp::counter_name(i) + "\",cpu=\"" + std::to_string(cpu) + "\"",
                 counters.per_cpu[cpu][i].packets);
    }
  }
  out.counter("xdp_bytes_total", "Bytes seen by the XDP program, by verdict reason (all CPUs)");
  for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i) {
    out.sample("xdp_bytes_total", "reason=\"" + xdp::counter_name(i) + "\"", counters.total[i].bytes);
  }
  // The DPDK fast path's own figures per lcore (the verdict counters above are the shared ones).
  const auto* dpdk_path = dynamic_cast<const dpdk::DpdkFastPath*>(&program);
  if (dpdk_path == nullptr) return;
  const auto lcores = dpdk_path->lcore_stats();
  const struct {
    const char* name;
    const char* help;
    uint64_t dpdk::LcoreStats::*field;
  } families[] = {
      {"dpdk_rx_wire_packets_total", "Frames the DPDK lcore received from its ports", &dpdk::LcoreStats::rx_wire},
      {"dpdk_rx_kernel_packets_total", "Frames the DPDK lcore received from the TAP devices (for the ports)", &dpdk::LcoreStats::rx_kernel},
      {"dpdk_tap_tx_dropped_total", "Classified frames a TAP queue did not take", &dpdk::LcoreStats::tap_tx_dropped},
      {"dpdk_wire_tx_dropped_total", "Kernel frames a port did not take", &dpdk::LcoreStats::wire_tx_dropped},
      {"dpdk_syn_buckets_full_total", "New sources admitted without a SYN bucket (table full)", &dpdk::LcoreStats::buckets_full},
      {"dpdk_syn_buckets_swept_total", "Expired SYN buckets removed", &dpdk::LcoreStats::buckets_swept},
  };
  for (const auto& f : families) {
    out.counter(f.name, f.help);
    for (const auto& l : lcores) out.sample(f.name, "cpu=\"" + std::to_string(l.cpu) + "\"", l.*f.field);
  }
}

// Settings a reload cannot change in place.
std::string restart_only_changes(const config::v1::Config& a, const config::v1::Config& b) {
  std::string out;
  if (a.listeners_size() != b.listeners_size()) out += " listeners";
  else {
    for (int i = 0; i < a.listeners_size(); ++i) {
      if (a.listeners(i).address() != b.listeners(i).address() || a.listeners(i).tls_mode() != b.listeners(i).tls_mode()) {
        out += " listeners";
        break;
      }
    }
  }
  if (a.workers().SerializeAsString() != b.workers().SerializeAsString()) out += " workers";
  if (a.dpdk().SerializeAsString() != b.dpdk().SerializeAsString()) out += " dpdk";
  if (a.spool().SerializeAsString() != b.spool().SerializeAsString()) out += " spool";
  if (a.xdp().SerializeAsString() != b.xdp().SerializeAsString()) out += " xdp";
  if (a.stats().SerializeAsString() != b.stats().SerializeAsString()) out += " stats";
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mxedge-dataplane: the SMTP data plane of the mxedge gateway (inbound TLS termination, spool, relay)"};
  std::string config_path = "/etc/mxedge/mxedge.yaml";
  bool check_only = false;
  int64_t grace_s = 10;
  app.add_option("-c,--config", config_path, "configuration file (YAML)")->capture_default_str();
  app.add_flag("--check-config", check_only, "validate the configuration and exit (0 when valid)");
  app.add_option("--shutdown-grace", grace_s, "seconds sessions get to finish on SIGTERM")->capture_default_str()->check(CLI::NonNegativeNumber);
  bool print_tuning = false;
  app.add_flag("--print-tuning", print_tuning,
               "print what the host tuning (mxedge-tune) needs from the configuration as KEY=VALUE lines, and exit");
  app.set_version_flag("--version", std::string("mxedge-dataplane ") + kVersion);
  CLI11_PARSE(app, argc, argv);

  config::LoadResult loaded = config::load_config_file(config_path, config::kFilesDataPlane);
  if (!loaded.ok()) {
    std::cerr << loaded.error_text();
    std::cerr << "mxedge-dataplane: configuration " << config_path << " is invalid; not starting\n";
    return 2;
  }
  config::v1::Config cfg = *loaded.config;
  apply_logging(cfg);
  std::string error;
  auto runtime = worker::build_runtime(cfg, &error);
  if (!runtime) {
    std::cerr << config_path << ": " << error << "\n";
    return 2;
  }
  if (print_tuning) {
    // Shell-friendly: comma-separated lists, no quoting needed (interface names and numbers only).
    auto join = [](const auto& items) {
      std::string out;
      for (const auto& i : items) {
        std::ostringstream one;
        one << i;
        out += (out.empty() ? "" : ",") + one.str();
      }
      return out;
    };
    std::cout << "WORKER_CORES=" << join(cfg.workers().cores()) << "\n"
              << "XDP_INTERFACES=" << join(cfg.xdp().interfaces()) << "\n"
              << "DPDK_PORTS=" << cfg.dpdk().ports_size() << "\n"
              << "DPDK_LCORES=" << join(cfg.dpdk().lcores()) << "\n";
    return 0;
  }
  if (check_only) {
    std::cout << config_path << ": valid\n";
    return 0;
  }

  // Signals are handled by the main thread only: block them before any worker thread exists.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Under systemd (Type=notify): READY=1 once listening, WATCHDOG=1 while every worker's loop answers.
  const service::ServiceNotifier notifier = service::ServiceNotifier::from_environment();

  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  const unsigned nworkers = static_cast<unsigned>(cfg.workers().cores_size());
  if (!spool::Spool::adopt_orphans(cfg.spool().directory(), nworkers, &error)) {
    log::error("dataplane.spool_failed").kv("reason", error);
    return 1;
  }
  worker::ConnectionLimits limits;
  std::vector<std::unique_ptr<worker::Worker>> workers;
  std::vector<std::vector<int>> fds_by_worker(nworkers);
  for (unsigned w = 0; w < nworkers; ++w) {
    for (const auto& l : runtime->listeners) {
      int fd = bind_listener(l.address, &error);
      if (fd < 0) {
        log::error("dataplane.listen_failed").kv("listener", l.config.name()).kv("reason", error);
        return 1;
      }
      fds_by_worker[w].push_back(fd);
    }
  }

  // The XDP fast path and, per listener, the SK_REUSEPORT program that hands each connection to the
  // worker pinned to the CPU its packets were steered to.
  std::unique_ptr<xdp::FastPath> fast_path;
  std::vector<std::unique_ptr<xdp::ReuseportSelector>> selectors;
  std::mutex fast_path_mu;  // the stats thread reads counters; the main thread owns the program
  const bool dpdk_mode = !cfg.dpdk().ports().empty();
  if (!cfg.xdp().interfaces().empty() || dpdk_mode) {
    xdp::route_libbpf_logs();
    xdp::XdpConfig xc = xdp_config(cfg);
    if (auto s = xdp::validate(xc); !s.ok()) {
      std::cerr << config_path << ": xdp: " << s.to_string() << "\n";
      return 2;
    }
    if (xc.pin_dir.rfind("/sys/fs/bpf/", 0) == 0 && !xdp::on_bpffs("/sys/fs/bpf")) {
      if (auto s = xdp::mount_bpffs("/sys/fs/bpf"); !s.ok()) log::warning("xdp.bpffs_mount_failed").kv("reason", s.to_string());
    }
    if (dpdk_mode) {
      // The DPDK fast path: the same classifier on DPDK-bound ports; the kernel gets the flows
      // through TAP queues whose receive processing runs on each worker's CPU (RPS).
      const auto& d = cfg.dpdk();
      dpdk::DpdkConfig dc;
      dc.eal_args.assign(d.eal_args().begin(), d.eal_args().end());
      dc.ports.assign(d.ports().begin(), d.ports().end());
      dc.lcores.assign(d.lcores().begin(), d.lcores().end());
      dc.tap_prefix = d.tap_prefix();
      dc.mbufs = d.mbufs();
      dc.burst = static_cast<uint16_t>(d.burst());
      auto p = std::make_unique<dpdk::DpdkFastPath>();
      if (auto s = p->start(xc, dc); !s.ok()) {
        log::error("dataplane.dpdk_failed").kv("reason", s.to_string());
        return 1;
      }
      fast_path = std::move(p);
    } else {
      auto p = std::make_unique<xdp::XdpProgram>();
      if (auto s = p->start(xc); !s.ok()) {
        log::error("dataplane.xdp_failed").kv("reason", s.to_string());
        return 1;
      }
      fast_path = std::move(p);
    }
    for (size_t li = 0; li < runtime->listeners.size(); ++li) {
      std::vector<int> fds;
      for (unsigned w = 0; w < nworkers; ++w) fds.push_back(fds_by_worker[w][li]);
      auto sel = std::make_unique<xdp::ReuseportSelector>();
      if (auto s = sel->attach(fds, xc.worker_cpus); !s.ok()) {
        log::error("dataplane.reuseport_failed").kv("listener", runtime->listeners[li].config.name()).kv("reason", s.to_string());
        return 1;
      }
      selectors.push_back(std::move(sel));
    }
  }

  // Outbound: the per-destination policies from the control plane (last state first, so unexpired
  // policies are usable before the control plane answers).
  std::unique_ptr<dataplane::PolicyStore> policy_store;
  std::unique_ptr<dataplane::PolicyClient> policy_client;
  if (cfg.outbound().enabled()) {
    policy_store = std::make_unique<dataplane::PolicyStore>(cfg.outbound().policy_state_file());
    if (!policy_store->load(&error)) log::warning("policy.state_unusable").kv("reason", error);
    else
      log::info("policy.state_loaded")
          .kv("file", cfg.outbound().policy_state_file())
          .kv("version", policy_store->version())
          .kv("policies", static_cast<uint64_t>(policy_store->current()->policies.size()));
    policy_client = std::make_unique<dataplane::PolicyClient>(*policy_store, cfg.outbound().policy_socket(),
                                                              cfg.hostname() + "/" + std::to_string(::getpid()));
  }

  for (unsigned w = 0; w < nworkers; ++w) {
    std::vector<int> fds = fds_by_worker[w];
    auto sp = spool::Spool::open(spool_options(cfg), w, &error);
    if (!sp) {
      log::error("dataplane.spool_failed").kv("worker", w).kv("reason", error);
      return 1;
    }
    workers.push_back(std::make_unique<worker::Worker>(w, cfg.workers().cores(static_cast<int>(w)), std::move(fds), runtime,
                                                       std::move(sp), limits, policy_store.get(), policy_client.get()));
  }
  // Start-up is done with privileges: listeners bound, BPF programs loaded, attached and pinned. A
  // service user (the appliance's mxedge-dp) keeps only what the running data plane needs, before any
  // thread exists (capabilities are per thread; later threads inherit the reduced sets): CAP_BPF for
  // the map reads and writes behind counters, lists and limits (detaching XDP at shutdown is closing
  // its BPF link, which needs nothing), and nothing without a fast path. DPDK mode keeps its own (its
  // lcore threads already run). Root is left alone: its files are its own whatever its capabilities.
  if (::geteuid() != 0 && !dpdk_mode) {
    std::vector<int> keep;
    if (fast_path) keep = {CAP_BPF};
    if (!privileges::drop_capabilities_except(keep, &error)) {
      log::error("dataplane.privileges_failed").kv("reason", error);
      return 1;
    }
    log::info("privileges.dropped").kv("effective", privileges::effective_capabilities());
  }
  for (auto& w : workers) w->start();
  if (policy_client) {
    policy_client->set_on_change([&workers] {
      for (auto& w : workers) w->policies_changed();
    });
    policy_client->start();
  }


  std::vector<const stats::WorkerCounters*> counters;
  for (auto& w : workers) counters.push_back(&w->counters());
  stats::StatsServer stats_server([&counters, &fast_path, &fast_path_mu] {
    stats::PrometheusText text;
    stats::render_workers(text, counters);
    std::lock_guard<std::mutex> lock(fast_path_mu);
    if (fast_path) render_xdp(text, *fast_path);
    return text.text();
  });
  if (!cfg.stats().listen().empty()) {
    if (!stats_server.start(*SocketAddress::parse(cfg.stats().listen()), &error)) {
      log::error("dataplane.stats_failed").kv("reason", error);
      for (auto& w : workers) w->stop(0);
      for (auto& w : workers) w->join();
      return 1;
    }
  }
  // Reload (SIGHUP, or `mxedgectl config reload` through the management API): certificates, limits,
  // domains, next hop, connectors; settings that need a restart are kept and named.
  std::mutex reload_mu;  // guards cfg and runtime against the management threads
  auto reload_config = [&](std::string* detail) -> bool {
    std::lock_guard<std::mutex> lock(reload_mu);
    std::string why;
    config::LoadResult again = config::load_config_file(config_path, config::kFilesDataPlane);
    if (!again.ok()) {
      *detail = again.error_text();
      log::error("dataplane.reload_rejected").kv("reason", *detail);
      return false;
    }
    auto next = worker::build_runtime(*again.config, &why);
    if (!next) {
      *detail = why;
      log::error("dataplane.reload_rejected").kv("reason", why);
      return false;
    }
    std::string fixed = restart_only_changes(cfg, *again.config);
    if (!fixed.empty()) log::warning("dataplane.reload_partial").kv("needs_restart", fixed.substr(1));
    if (!fixed.empty()) {
      // Keep the settings that cannot change in place so sockets and spools stay consistent.
      config::v1::Config merged = *again.config;
      *merged.mutable_listeners() = cfg.listeners();
      for (int i = 0; i < merged.listeners_size() && i < again.config->listeners_size(); ++i) {
        *merged.mutable_listeners(i)->mutable_certificates() = again.config->listeners(i).certificates();
        merged.mutable_listeners(i)->set_require_tls(again.config->listeners(i).require_tls());
      }
      *merged.mutable_workers() = cfg.workers();
      *merged.mutable_spool() = cfg.spool();
      next = worker::build_runtime(merged, &why);
      if (!next) {
        *detail = why;
        log::error("dataplane.reload_rejected").kv("reason", why);
        return false;
      }
    }
    apply_logging(next->config);
    for (auto& w : workers) w->reload(next);
    runtime = next;
    cfg = next->config;
    *detail = fixed.empty() ? "reloaded" : "reloaded; needs a restart to change:" + fixed;
    log::info("dataplane.reloaded").kv("accepted_domains", static_cast<uint64_t>(runtime->config.accepted_domains_size()));
    return true;
  };

  // The management API's data-plane end (the control plane forwards to it).
  dataplane::AdminDeps admin_deps;
  for (auto& w : workers) admin_deps.workers.push_back(w.get());
  admin_deps.fast_path = &fast_path;
  admin_deps.fast_path_mu = &fast_path_mu;
  admin_deps.policies = policy_store.get();
  admin_deps.policy_client = policy_client.get();
  admin_deps.runtime = [&] {
    std::lock_guard<std::mutex> lock(reload_mu);
    return runtime;
  };
  admin_deps.reload = reload_config;
  admin_deps.started_at = static_cast<int64_t>(::time(nullptr));
  admin_deps.version = kVersion;
  dataplane::Admin admin(std::move(admin_deps));
  mgmt::MgmtServer admin_server("data plane", [&admin](const mgmt::v1::Request& r, const mgmt::Peer& p) { return admin.handle(r, p); });
  if (!admin_server.start(cfg.management().dataplane_socket(), cfg.management().admin_group(), &error)) {
    log::error("dataplane.management_failed").kv("reason", error);
    if (policy_client) policy_client->stop();
    for (auto& w : workers) w->stop(0);
    for (auto& w : workers) w->join();
    return 1;
  }

  {
    std::string names;
    for (const auto& l : runtime->listeners) names += (names.empty() ? "" : ",") + l.config.name() + "@" + l.address.to_string();
    log::info("dataplane.ready").kv("listeners", names).kv("workers", nworkers).kv("hostname", cfg.hostname())
        .kv("next_hop", cfg.next_hop().host() + ":" + std::to_string(cfg.next_hop().port())).kv("spool", cfg.spool().directory())
        .kv("stats", cfg.stats().listen().empty() ? std::string("off") : cfg.stats().listen())
        .kv("management", cfg.management().dataplane_socket())
        .kv("fast_path", fast_path ? std::string(fast_path->kind()) + " on " + std::to_string(fast_path->attachments().size()) + (dpdk_mode ? " port(s)" : " interface(s)") : std::string("off"));
  }

  {
    std::string why;
    if (!notifier.ready("accepting on " + std::to_string(runtime->listeners.size()) + " listener(s) with " + std::to_string(nworkers) + " worker(s)", &why))
      log::warning("service.notify_failed").kv("reason", why);
  }
  // The watchdog: each tick posts a no-op to every worker's event loop, and WATCHDOG=1 goes out only
  // when every worker ran the previous tick's post, so a worker stuck in a loop (not just a live main
  // thread) gets the service restarted by WatchdogSec=.
  const int64_t tick_ms = notifier.watchdog_ping_ms();
  std::vector<std::shared_ptr<std::atomic<uint64_t>>> answered;
  for (size_t i = 0; i < workers.size(); ++i) answered.push_back(std::make_shared<std::atomic<uint64_t>>(0));
  uint64_t ticks = 0;
  bool stuck_logged = false;
  if (tick_ms > 0) log::info("service.watchdog").kv("interval_ms", tick_ms * 2);

  while (true) {
    siginfo_t info{};
    int sig;
    if (tick_ms > 0) {
      timespec ts{static_cast<time_t>(tick_ms / 1000), static_cast<long>((tick_ms % 1000) * 1'000'000)};
      sig = sigtimedwait(&sigs, &info, &ts);
    } else {
      sig = sigwaitinfo(&sigs, &info);
    }
    if (sig < 0 && errno == EAGAIN && tick_ms > 0) {
      std::string stuck;
      for (size_t i = 0; i < workers.size(); ++i)
        if (ticks > 0 && answered[i]->load() < ticks) stuck += (stuck.empty() ? "" : ",") + std::to_string(i);
      if (stuck.empty()) {
        std::string why;
        if (!notifier.watchdog(&why)) log::warning("service.notify_failed").kv("reason", why);
        stuck_logged = false;
      } else if (!stuck_logged) {
        log::error("service.worker_unresponsive").kv("workers", stuck).kv("since_ms", tick_ms);
        stuck_logged = true;
      }
      ++ticks;
      for (size_t i = 0; i < workers.size(); ++i)
        workers[i]->loop().post([a = answered[i], t = ticks] { a->store(t); });
      continue;
    }
    if (sig < 0) continue;
    if (sig == SIGHUP) {
      notifier.reloading();
      std::string detail;
      reload_config(&detail);
      notifier.ready(detail);
      continue;
    }
    notifier.stopping();
    log::info("dataplane.stopping").kv("signal", sig == SIGTERM ? "TERM" : "INT").kv("grace_s", grace_s);
    admin_server.stop();                        // no management request reaches a stopping worker
    if (policy_client) policy_client->stop();  // no more pushes (or wake-ups) while workers wind down
    for (auto& w : workers) w->stop(grace_s * 1000);
    for (auto& w : workers) w->join();
    stats_server.stop();
    workers.clear();
    {
      std::lock_guard<std::mutex> lock(fast_path_mu);
      selectors.clear();
      fast_path.reset();  // detaches from every interface; pinned maps stay for the next start
    }
    log::info("dataplane.stopped");
    return 0;
  }
}
