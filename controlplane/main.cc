// mxedge-controlplane: resolves destinations with DNSSEC validation (libunbound), keeps the MTA-STS
// policy cache, compiles per-destination delivery policies, and serves them to the data plane over a
// Unix socket (controlplane/push). One event loop (the resolver's libevent base) runs everything:
// DNS, HTTPS policy fetches, the socket, and the timers (policy expiry and idle withdrawal each
// second; MTA-STS cache upkeep every outbound.sts_maintenance). SIGTERM/SIGINT stop it.
// GCC 12's -Wnull-dereference reports a false positive inside CLI11's inline CLI::detail::split.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include <event2/event.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <future>
#include <optional>
#include <thread>
#include <iostream>

#include "controlplane/mgmt/management.h"
#include "controlplane/mta_sts/mta_sts_config.h"
#include "controlplane/mta_sts/policy_cache.h"
#include "controlplane/mta_sts/policy_fetcher.h"
#include "controlplane/mta_sts/sts_client.h"
#include "controlplane/push/policy_server.h"
#include "controlplane/push/policy_table.h"
#include "controlplane/resolver/destination.h"
#include "controlplane/resolver/resolver.h"
#include "controlplane/resolver/resolver_config.h"
#include "controlplane/sts_publish/sts_publish.h"
#include "controlplane/sts_publish/sts_server.h"
#include "controlplane/tlsrpt/sender.h"
#include "policy/config_loader.h"
#include "policy/duration.h"
#include "policy/log.h"
#include "policy/mgmt_socket.h"
#include "policy/privileges.h"
#include "policy/service_notify.h"

namespace {

using namespace mxedge;

struct Timer {
  event* ev = nullptr;
  std::function<void()> fn;
  static void fire(evutil_socket_t, short, void* arg) { static_cast<Timer*>(arg)->fn(); }
  void start(event_base* base, int64_t period_ms, std::function<void()> f) {
    fn = std::move(f);
    ev = event_new(base, -1, EV_PERSIST, &Timer::fire, this);
    timeval tv{static_cast<time_t>(period_ms / 1000), static_cast<suseconds_t>((period_ms % 1000) * 1000)};
    event_add(ev, &tv);
  }
  ~Timer() {
    if (ev != nullptr) event_free(ev);
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mxedge control plane: DNSSEC-validated destination policy (DANE, MTA-STS) for the data plane."};
  std::string config_file = "/etc/mxedge/mxedge.yaml";
  bool check_only = false;
  app.add_option("--config", config_file, "Gateway configuration file")->capture_default_str();
  app.add_flag("--check-config", check_only, "Validate the configuration and exit (0 when valid)");
  bool print_sts = false;
  app.add_flag("--print-mta-sts", print_sts, "Print the gateway's own MTA-STS policy, its id and the _mta-sts TXT record for each accepted domain, and exit");
  CLI11_PARSE(app, argc, argv);

  auto loaded = config::load_config_file(config_file, config::kFilesControlPlane);
  if (!loaded.ok()) {
    std::cerr << loaded.error_text();
    return 1;
  }
  if (check_only) {
    std::cout << config_file << ": ok\n";
    return 0;
  }
  if (print_sts) {
    const std::string text = sts_publish::policy_text(*loaded.config);
    policy::StsError perr;
    if (!policy::parse_sts_policy(text, &perr)) {
      std::cerr << "the generated MTA-STS policy does not parse: " << perr.to_string() << "\n";
      return 1;
    }
    const std::string id = sts_publish::policy_id(text);
    for (const auto& d : loaded.config->accepted_domains()) {
      std::cout << "domain: " << d << "\nurl: https://mta-sts." << d << "/.well-known/mta-sts.txt\nid: " << id
                << "\ntxt: " << sts_publish::txt_record(d, id) << "\npolicy:\n";
      for (size_t b = 0, e; b < text.size(); b = e + 2) {
        e = text.find("\r\n", b);
        std::cout << "  " << text.substr(b, e - b) << "\n";
      }
      std::cout << "\n";
    }
    if (loaded.config->mta_sts_publish().listen().empty())
      std::cerr << "note: mta_sts_publish.listen is not set; this control plane does not serve the policy\n";
    return 0;
  }
  const config::v1::Config cfg = *loaded.config;
  log::configure(cfg.logging().format() == config::v1::LOG_FORMAT_JSON ? log::Format::kJson : log::Format::kLogfmt,
                 static_cast<log::Level>(std::max(0, static_cast<int>(cfg.logging().level()) - 1)));
  ::signal(SIGPIPE, SIG_IGN);

  std::string error;
  auto resolver = resolver::Resolver::create(resolver::resolver_options(cfg.resolver()), &error);
  if (!resolver) {
    log::error("controlplane.failed").kv("reason", error);
    return 1;
  }
  resolver::DestinationResolver destinations(*resolver, resolver::destination_options(cfg.resolver()));
  mta_sts::PolicyFetcher fetcher(*resolver, mta_sts::fetch_options(cfg.mta_sts()));
  mta_sts::StsClient sts(*resolver, fetcher);
  mta_sts::CacheOptions copt = mta_sts::cache_options(cfg.mta_sts());
  copt.now = [] { return static_cast<int64_t>(::time(nullptr)); };
  auto sts_cache = mta_sts::PolicyCache::open(sts, copt, &error);
  if (!sts_cache) {
    log::error("controlplane.failed").kv("reason", error);
    return 1;
  }
  push::PolicyTable table(cfg, destinations, sts_cache.get(), [] { return static_cast<int64_t>(::time(nullptr)); });
  event_base* base = resolver->event_base();
  auto server = push::PolicyServer::listen(base, cfg.outbound().policy_socket(), table, &error);
  if (!server) {
    log::error("controlplane.failed").kv("reason", error);
    return 1;
  }
  table.set_listener([&server](const policy::v1::Delta& d) { server->broadcast(d); });

  Timer tick, maintain;
  tick.start(base, 1000, [&] { table.tick(); });
  maintain.start(base, config::duration_ms(cfg.outbound().sts_maintenance()), [&] {
    const size_t started = sts_cache->maintain();
    if (started > 0) log::info("mta_sts.maintenance").kv("refreshes", static_cast<uint64_t>(started)).kv("entries", static_cast<uint64_t>(sts_cache->size()));
  });
  // The management API (mxedgectl): its requests run on their own threads and reach the table
  // through the event base.
  controlplane::ManagementDeps mdeps;
  mdeps.base = base;
  mdeps.table = &table;
  mdeps.policy_server = server.get();
  mdeps.sts_cache = sts_cache.get();
  mdeps.config_file = config_file;
  mdeps.started_at = static_cast<int64_t>(::time(nullptr));
  mdeps.version = "0.1.0";
  std::unique_ptr<sts_publish::StsPublishServer> sts_publisher;  // bound first, serving after the other servers
  std::unique_ptr<tlsrpt::ReportSender> report_sender;            // TLS-RPT reports, its own thread
  mdeps.reload = [&table, &config_file, &cfg, &sts_publisher, &report_sender](std::string* detail) {
    auto again = config::load_config_file(config_file, config::kFilesControlPlane);
    if (!again.ok()) {
      *detail = again.error_text();
      log::error("controlplane.reload_rejected").kv("reason", *detail);
      return false;
    }
    std::string fixed;
    if (again.config->resolver().SerializeAsString() != cfg.resolver().SerializeAsString()) fixed += " resolver";
    if (again.config->mta_sts().SerializeAsString() != cfg.mta_sts().SerializeAsString()) fixed += " mta_sts";
    if (again.config->management().SerializeAsString() != cfg.management().SerializeAsString()) fixed += " management";
    if (again.config->outbound().policy_socket() != cfg.outbound().policy_socket()) fixed += " outbound.policy_socket";
    if (again.config->mta_sts_publish().listen() != cfg.mta_sts_publish().listen() ||
        again.config->mta_sts_publish().certificates().size() != cfg.mta_sts_publish().certificates().size() ||
        !std::equal(cfg.mta_sts_publish().certificates().begin(), cfg.mta_sts_publish().certificates().end(),
                    again.config->mta_sts_publish().certificates().begin(),
                    [](const auto& a, const auto& b) { return a.SerializeAsString() == b.SerializeAsString(); }))
      fixed += " mta_sts_publish.listen/certificates";
    if (again.config->tlsrpt().reports().enabled() != cfg.tlsrpt().reports().enabled() ||
        again.config->tlsrpt().reports().state_dir() != cfg.tlsrpt().reports().state_dir())
      fixed += " tlsrpt.reports.enabled/state_dir";
    if (report_sender) report_sender->set_config(*again.config);
    if (sts_publisher) {
      std::string text = sts_publish::policy_text(*again.config);
      log::info("mta_sts.publish.reloaded").kv("id", sts_publish::policy_id(text));
      sts_publisher->set_policy(std::move(text), {again.config->accepted_domains().begin(), again.config->accepted_domains().end()});
    }
    const size_t n = table.set_config(*again.config);
    *detail = "reloaded; " + std::to_string(n) + " policies recompiled" + (fixed.empty() ? "" : "; needs a restart to change:" + fixed);
    log::info("controlplane.reloaded").kv("recompiled", static_cast<uint64_t>(n)).kv("connectors", static_cast<int64_t>(again.config->connectors_size()))
        .kv("needs_restart", fixed.empty() ? std::string("none") : fixed.substr(1));
    return true;
  };
  if (cfg.tlsrpt().reports().enabled()) {
    mdeps.tlsrpt_pending = [&report_sender](mgmt::v1::TlsRptResponse* out) {
      if (!report_sender) return;
      for (const tlsrpt::PendingReport& p : report_sender->pending()) {
        auto* o = out->add_outgoing();
        o->set_day(tlsrpt::format_datetime(p.day).substr(0, 10));
        o->set_policy_domain(p.domain);
        o->set_report_id(p.report_id);
        o->set_due(p.due);
        o->set_next_attempt(p.next_attempt);
        o->set_attempts(p.attempts);
        o->set_successful_sessions(p.successes);
        o->set_failed_sessions(p.failures);
        o->set_last_error(p.last_error);
        for (const auto& t : p.targets) {
          auto* ot = o->add_targets();
          ot->set_uri(t.uri);
          ot->set_done(t.done);
          ot->set_result(t.result);
        }
      }
    };
  }
  auto reload_on_signal = mdeps.reload;  // SIGHUP (systemd's ExecReload) reloads like `mxedgectl config reload`
  controlplane::Management management(std::move(mdeps));
  // The only privileged step is binding mta_sts_publish.listen (port 443 needs
  // CAP_NET_BIND_SERVICE); its thread starts further down. Then, before any thread exists, a service
  // user (the appliance's mxedge-cp) gives up every capability, and this thread takes the worker
  // sandbox (policy/privileges.h), which every thread started from here inherits: the control plane
  // parses DNS answers, HTTPS responses and policies from the Internet and never starts a program,
  // calls bpf() or mounts anything.
  if (!cfg.mta_sts_publish().listen().empty()) {
    sts_publisher = sts_publish::StsPublishServer::bind(cfg, &error);
    if (!sts_publisher) {
      log::error("controlplane.failed").kv("reason", error);
      return 1;
    }
  }
  if (::geteuid() != 0) {
    if (!privileges::drop_capabilities_except({}, &error)) {
      log::error("controlplane.privileges_failed").kv("reason", error);
      return 1;
    }
    log::info("privileges.dropped").kv("effective", privileges::effective_capabilities());
  }
  if (!privileges::restrict_thread_syscalls(&error)) {
    log::error("controlplane.sandbox_failed").kv("reason", error);  // keeps serving under the unit's filter
  }
  mgmt::MgmtServer mgmt_server("control plane",
                               [&management](const mgmt::v1::Request& r, const mgmt::Peer& p) { return management.handle(r, p); });
  if (!mgmt_server.start(cfg.management().socket(), cfg.management().admin_group(), &error)) {
    log::error("controlplane.failed").kv("reason", error);
    return 1;
  }
  // TLS-RPT: the sender's thread asks this thread's MTA-STS cache for the max_age of the policies it
  // reports on.
  controlplane::EventBaseTasks report_tasks(base);
  if (cfg.tlsrpt().reports().enabled()) {
    // MXEDGE_TEST_CLOCK_OFFSET (seconds) moves the report sender's clock only, so that the tests can
    // cross a UTC midnight; it is not meant for production and is logged when set.
    int64_t offset = 0;
    if (const char* o = std::getenv("MXEDGE_TEST_CLOCK_OFFSET"); o != nullptr && *o != 0) {
      offset = std::strtoll(o, nullptr, 10);
      log::warning("tlsrpt.test_clock_offset").kv("seconds", offset);
    }
    auto deps = tlsrpt::daemon_deps(cfg, [offset] { return static_cast<int64_t>(::time(nullptr)) + offset; });
    deps.sts_max_age = [&report_tasks, &sts_cache](const std::string& domain, const std::string& id) -> std::optional<uint32_t> {
      auto promise = std::make_shared<std::promise<std::optional<uint32_t>>>();
      auto result = promise->get_future();
      report_tasks.post([promise, &sts_cache, domain, id] {
        auto p = sts_cache->cached(domain);
        promise->set_value(p && (id.empty() || p->id == id) ? std::optional<uint32_t>(p->policy.max_age) : std::nullopt);
      });
      if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) return std::nullopt;
      return result.get();
    };
    report_sender = tlsrpt::ReportSender::open(cfg, std::move(deps), &error);
    if (!report_sender) {
      log::error("controlplane.failed").kv("reason", error);
      mgmt_server.stop();
      return 1;
    }
    report_sender->start();
  }
  if (sts_publisher) sts_publisher->serve();

  auto on_signal = [](evutil_socket_t sig, short, void* arg) {
    log::info("controlplane.stopping").kv("signal", static_cast<int64_t>(sig));
    event_base_loopexit(static_cast<event_base*>(arg), nullptr);
  };
  event* term = evsignal_new(base, SIGTERM, on_signal, base);
  event* intr = evsignal_new(base, SIGINT, on_signal, base);
  event_add(term, nullptr);
  event_add(intr, nullptr);
  // Under systemd (Type=notify): READY=1 below; RELOADING=1 around a SIGHUP reload; WATCHDOG=1 from
  // a timer on the one event loop, so a stuck loop gets the service restarted by WatchdogSec=.
  const service::ServiceNotifier notifier = service::ServiceNotifier::from_environment();
  struct HupContext {
    const service::ServiceNotifier* notifier;
    std::function<bool(std::string*)>* reload;
  } hup_ctx{&notifier, &reload_on_signal};
  auto on_hup = [](evutil_socket_t, short, void* arg) {
    auto* c = static_cast<HupContext*>(arg);
    c->notifier->reloading();
    std::string detail;
    (*c->reload)(&detail);
    c->notifier->ready(detail);
  };
  event* hup = evsignal_new(base, SIGHUP, on_hup, &hup_ctx);
  event_add(hup, nullptr);
  Timer watchdog;
  if (const int64_t tick_ms = notifier.watchdog_ping_ms(); tick_ms > 0) {
    log::info("service.watchdog").kv("interval_ms", tick_ms * 2);
    watchdog.start(base, tick_ms, [&notifier] {
      std::string why;
      if (!notifier.watchdog(&why)) log::warning("service.notify_failed").kv("reason", why);
    });
  }

  log::info("controlplane.started")
      .kv("policy_socket", cfg.outbound().policy_socket())
      .kv("management", cfg.management().socket())
      .kv("trust_anchor", cfg.resolver().trust_anchor_file())
      .kv("mta_sts_cache", cfg.mta_sts().cache_file())
      .kv("mta_sts_policies", static_cast<uint64_t>(sts_cache->size()))
      .kv("connectors", static_cast<int64_t>(cfg.connectors_size()));
  {
    std::string why;
    if (!notifier.ready("serving " + std::to_string(sts_cache->size()) + " cached MTA-STS policies", &why))
      log::warning("service.notify_failed").kv("reason", why);
  }
  event_base_dispatch(base);
  notifier.stopping();

  // Requests in progress may be waiting for the event base: run its tasks until they are done.
  std::atomic<bool> drained{false};
  std::thread drain([&mgmt_server, &drained, &report_sender] {
    if (report_sender) report_sender->stop();
    mgmt_server.stop();
    drained = true;
  });
  while (!drained) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  drain.join();
  if (sts_publisher) sts_publisher->stop();
  event_free(term);
  event_free(intr);
  event_free(hup);
  const auto& c = table.counters();
  log::info("controlplane.stopped")
      .kv("requests", c.requests)
      .kv("compilations", c.compilations)
      .kv("deltas", c.deltas)
      .kv("sessions", server->counters().sessions);
  server.reset();
  sts_cache->flush_usage();
  return 0;
}
