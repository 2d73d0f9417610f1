// mxedge-bench-mta-sts: MTA-STS policy lookups by mxedge's policy cache (controlplane/mta_sts) against
// the MTA-STS lab: every domain's policy discovered and fetched at once from an empty cache, then the
// warm path. Driven by bench_mta_sts.py, which starts the lab (DNS, unbound, nginx) and runs
// postfix-mta-sts-resolver on the same domains; see there for what each figure means. Prints one
// JSON object per measurement on stdout.
#include <event2/event.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "controlplane/mta_sts/policy_cache.h"
#include "controlplane/mta_sts/policy_fetcher.h"
#include "controlplane/mta_sts/sts_client.h"
#include "controlplane/resolver/resolver.h"
#include "tests/load/bench_figures.h"

namespace {

using namespace mxedge;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// User + system CPU seconds of this process so far.
double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

using bench::latency_summary;
using bench::read_names;

// The lab's benchmark policy for `domain`: mode enforce, exactly "mx.<domain>".
bool expected_policy(const std::string& domain, const mta_sts::StsResult& r) {
  return r.kind == mta_sts::StsResult::kPolicy && r.policy.mode == policy::StsMode::kEnforce &&
         r.policy.mx.size() == 1 && r.policy.mx[0] == "mx." + domain;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::cerr
        << "usage: mxedge-bench-mta-sts ANCHOR FORWARDER CA_FILE NAMES_FILE CACHE_DB WARM_SECONDS [FETCH_TIMEOUT_MS]\n";
    return 2;
  }
  try {
    resolver::ResolverOptions opt;
    opt.trust_anchor_file = argv[1];
    opt.forwarders = {argv[2]};
    opt.allow_loopback_servers = true;
    opt.nodefault_zones = {"test."};
    opt.use_ipv6_transport = false;
    mta_sts::FetchOptions fopt;
    fopt.ca_file = argv[3];
    const std::vector<std::string> names = read_names(argv[4]);
    const std::string db = argv[5];
    const double warm_seconds = std::stod(argv[6]);
    if (argc > 7) fopt.total_timeout = std::chrono::milliseconds(std::stoll(argv[7]));
    fopt.connect_timeout = std::min(fopt.connect_timeout, fopt.total_timeout);
    auto emit = [](const nlohmann::json& j) { std::cout << j.dump() << std::endl; };

    // A fresh cache file: nothing may be answered from an earlier run.
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) ::unlink((db + suffix).c_str());

    std::string err;
    auto res = resolver::Resolver::create(opt, &err);
    if (!res) throw std::runtime_error("resolver: " + err);
    mta_sts::PolicyFetcher fetcher(*res, fopt);
    mta_sts::StsClient client(*res, fetcher);
    mta_sts::CacheOptions copt;
    copt.path = db;
    auto cache = mta_sts::PolicyCache::open(client, copt, &err);
    if (!cache) throw std::runtime_error(err);
    if (cache->size() != 0) throw std::runtime_error("the policy cache " + db + " is not empty");

    // Finalize libunbound (anchors, modules) before the clock starts, without caching anything of
    // the lab: "localhost" is answered from libunbound's built-in local data.
    {
      bool done = false;
      res->lookup("localhost", resolver::kTypeA, [&](const resolver::Resolver::Result&, bool) { done = true; });
      res->run_until([&] { return done; });
    }

    // (a) cold: every domain's lookup issued at once into the empty cache (TXT discovery, policy host
    // address, HTTPS fetch, parse, SQLite store), each one's latency measured from the common start.
    {
      const size_t n = names.size();
      std::vector<double> ms(n, -1.0);
      size_t done = 0, policies = 0, wrong = 0;
      double last_policy_ms = 0;               // when the last expected policy arrived
      std::map<std::string, size_t> failures;  // kind: reason -> count
      const double cpu0 = cpu_seconds();
      const auto start = Clock::now();
      for (size_t i = 0; i < n; ++i) {
        cache->lookup(names[i], [&, i](const mta_sts::StsResult& r) {
          if (ms[i] >= 0) return;  // never expected: a second callback
          ms[i] = ms_since(start);
          ++done;
          if (expected_policy(names[i], r)) {
            ++policies;
            last_policy_ms = std::max(last_policy_ms, ms[i]);
          } else if (r.kind == mta_sts::StsResult::kPolicy) {
            ++wrong;
          } else {
            ++failures[std::string(mta_sts::to_string(r.kind)) + ": " + r.reason];
          }
        });
      }
      fetcher.run_until([&] { return done == n; });
      // A failure may be delivered by an event_base_once() callback after nothing is "in flight".
      for (int k = 0; k < 100 && done < n; ++k) {
        event_base_loop(res->event_base(), EVLOOP_NONBLOCK);
        fetcher.run_until([&] { return done == n; });
      }
      const double total_ms = ms_since(start);
      const double cpu = cpu_seconds() - cpu0;
      std::vector<double> answered;
      for (double x : ms)
        if (x >= 0) answered.push_back(x);
      fetcher.run_until([] { return false; });  // idle: nothing of the cold phase left in flight
      nlohmann::json fj = nlohmann::json::object();
      for (const auto& [why, count] : failures) fj[why] = count;
      const auto& c = cache->counters();
      emit({{"measure", "cold_fetch"},
            {"domains", n},
            {"mxedge", latency_summary(answered)},
            {"total_ms", total_ms},
            {"last_policy_ms", last_policy_ms},
            {"policies", policies},
            {"wrong_policy", wrong},
            {"unanswered", n - done},
            {"failures", fj},
            {"cpu_s", cpu},
            {"cache_entries", cache->size()},
            {"cache_fetches", c.fetches},
            {"resolver_queries", res->counters().queries_started},
            {"fetch_timeout_ms", fopt.total_timeout.count()}});
    }

    // (b) warm, one thread: cached() — the delivery path's question, no I/O — over the names for
    // warm_seconds; then lookup() with a callback (a cache hit answers before lookup() returns).
    {
      size_t lookups = 0, hits = 0;
      const auto start = Clock::now();
      const auto end = start + std::chrono::duration<double>(warm_seconds);
      while (Clock::now() < end) {
        for (int k = 0; k < 4096; ++k) {
          hits += cache->cached(names[lookups % names.size()]) != nullptr;
          ++lookups;
        }
      }
      const double secs = seconds_since(start);

      const auto before = cache->counters();
      size_t calls = 0, answered = 0, cb_policies = 0;
      const auto start2 = Clock::now();
      const auto end2 = start2 + std::chrono::duration<double>(warm_seconds);
      while (Clock::now() < end2) {
        for (int k = 0; k < 1024; ++k) {
          cache->lookup(names[calls % names.size()], [&](const mta_sts::StsResult& r) {
            ++answered;
            cb_policies += r.kind == mta_sts::StsResult::kPolicy;
          });
          ++calls;
        }
      }
      const double secs2 = seconds_since(start2);
      const size_t synchronous = answered;
      const auto after = cache->counters();
      fetcher.run_until([] { return false; });  // whatever a miss started
      emit({{"measure", "warm"},
            {"cached_lookups_per_s", static_cast<double>(lookups) / secs},
            {"cached_hit_rate", static_cast<double>(hits) / static_cast<double>(lookups)},
            {"cached_lookups", lookups},
            {"lookup_callbacks_per_s", static_cast<double>(synchronous) / secs2},
            {"lookup_calls", calls},
            {"lookup_hit_rate", static_cast<double>(after.hits - before.hits) / static_cast<double>(calls)},
            {"lookup_policy_rate", static_cast<double>(cb_policies) / static_cast<double>(calls)},
            {"lookup_background_txt_checks", after.txt_checks - before.txt_checks},
            {"lookup_fetches", after.fetches - before.fetches},
            {"seconds", warm_seconds}});
    }
  } catch (const std::exception& e) {
    std::cerr << "mxedge-bench-mta-sts: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
