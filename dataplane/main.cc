// mxedge-dataplane: loads the configuration, binds the listeners (one SO_REUSEPORT socket per
// listener per worker), recovers the spool, starts one pinned worker per configured core, and then
// waits for signals: SIGHUP reloads the configuration (certificates, limits, domains, next hop) without
// dropping connections; SIGTERM/SIGINT stop accepting, let sessions finish within a grace period, and
// exit with every acknowledged message still in the spool.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>

#include "dataplane/spool/spool.h"
#include "dataplane/stats/prometheus.h"
#include "dataplane/stats/stats_server.h"
#include "dataplane/worker/runtime_config.h"
#include "dataplane/worker/worker.h"
#include "policy/config_loader.h"
#include "policy/log.h"

namespace {

using namespace mxedge;

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
  if (a.spool().SerializeAsString() != b.spool().SerializeAsString()) out += " spool";
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
  app.set_version_flag("--version", std::string("mxedge-dataplane 0.1.0"));
  CLI11_PARSE(app, argc, argv);

  config::LoadResult loaded = config::load_config_file(config_path);
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
  for (unsigned w = 0; w < nworkers; ++w) {
    std::vector<int> fds;
    for (const auto& l : runtime->listeners) {
      int fd = bind_listener(l.address, &error);
      if (fd < 0) {
        log::error("dataplane.listen_failed").kv("listener", l.config.name()).kv("reason", error);
        return 1;
      }
      fds.push_back(fd);
    }
    auto sp = spool::Spool::open(spool_options(cfg), w, &error);
    if (!sp) {
      log::error("dataplane.spool_failed").kv("worker", w).kv("reason", error);
      return 1;
    }
    workers.push_back(std::make_unique<worker::Worker>(w, cfg.workers().cores(static_cast<int>(w)), std::move(fds), runtime,
                                                       std::move(sp), limits));
  }
  for (auto& w : workers) w->start();

  std::vector<const stats::WorkerCounters*> counters;
  for (auto& w : workers) counters.push_back(&w->counters());
  stats::StatsServer stats_server([&counters] {
    stats::PrometheusText text;
    stats::render_workers(text, counters);
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
  {
    std::string names;
    for (const auto& l : runtime->listeners) names += (names.empty() ? "" : ",") + l.config.name() + "@" + l.address.to_string();
    log::info("dataplane.ready").kv("listeners", names).kv("workers", nworkers).kv("hostname", cfg.hostname())
        .kv("next_hop", cfg.next_hop().host() + ":" + std::to_string(cfg.next_hop().port())).kv("spool", cfg.spool().directory())
        .kv("stats", cfg.stats().listen().empty() ? std::string("off") : cfg.stats().listen());
  }

  while (true) {
    siginfo_t info{};
    int sig = sigwaitinfo(&sigs, &info);
    if (sig < 0) continue;
    if (sig == SIGHUP) {
      config::LoadResult again = config::load_config_file(config_path);
      if (!again.ok()) {
        log::error("dataplane.reload_rejected").kv("reason", again.error_text());
        continue;
      }
      auto next = worker::build_runtime(*again.config, &error);
      if (!next) {
        log::error("dataplane.reload_rejected").kv("reason", error);
        continue;
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
        next = worker::build_runtime(merged, &error);
        if (!next) {
          log::error("dataplane.reload_rejected").kv("reason", error);
          continue;
        }
      }
      apply_logging(next->config);
      for (auto& w : workers) w->reload(next);
      runtime = next;
      cfg = next->config;
      log::info("dataplane.reloaded").kv("accepted_domains", static_cast<uint64_t>(runtime->config.accepted_domains_size()));
      continue;
    }
    log::info("dataplane.stopping").kv("signal", sig == SIGTERM ? "TERM" : "INT").kv("grace_s", grace_s);
    for (auto& w : workers) w->stop(grace_s * 1000);
    for (auto& w : workers) w->join();
    stats_server.stop();
    workers.clear();
    log::info("dataplane.stopped");
    return 0;
  }
}
