// mxedge-resolve: resolves destinations (MX, addresses, TLSA) the way outbound delivery does, with
// DNSSEC validated in-process, and prints what DANE means for each MX host. Also does single lookups
// (--type) and shows the cache at work (--repeat/--interval).
// GCC 12's -Wnull-dereference reports a false positive inside CLI11's inline CLI::detail::split.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <iostream>
#include <random>
#include <thread>

#include <google/protobuf/util/json_util.h>

#include "controlplane/analyzer/analyzer.h"
#include "controlplane/mta_sts/mta_sts_config.h"
#include "controlplane/mta_sts/policy_cache.h"
#include "controlplane/mta_sts/policy_fetcher.h"
#include "controlplane/mta_sts/sts_client.h"
#include "controlplane/resolver/destination.h"
#include "controlplane/resolver/dnssec_records.h"
#include "controlplane/resolver/resolver.h"
#include "controlplane/resolver/resolver_config.h"
#include "controlplane/resolver/result_json.h"
#include "controlplane/wizard/wizard.h"
#include "controlplane/policy_compiler/compiler.h"
#include "controlplane/policy_compiler/policy_json.h"
#include "policy/config_loader.h"
#include "policy/connectors.h"

namespace {

// A report as the proto3 JSON mapping (field names as in the .proto, defaults printed).
void print_proto_json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions jopt;
  jopt.always_print_primitive_fields = true;
  jopt.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, jopt);
  std::cout << out << "\n";
}

using namespace mxedge::resolver;

int parse_type(const std::string& t) {
  if (t == "A") return kTypeA;
  if (t == "AAAA") return kTypeAaaa;
  if (t == "MX") return kTypeMx;
  if (t == "TLSA") return kTypeTlsa;
  if (t == "CNAME") return kTypeCname;
  if (t == "TXT") return kTypeTxt;
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Resolve mail destinations with DNSSEC validation and RFC 7672 (DANE) rules."};
  ResolverOptions opt;
  DestinationOptions dopt;
  std::vector<std::string> names;
  std::string type;
  bool json = false;
  int repeat = 1;
  double interval = 0;
  int64_t timeout_ms = opt.query_timeout.count();
  int64_t failure_ttl = opt.failure_ttl.count();
  std::string ds_zone;
  app.add_option("names", names, "Domains to resolve (or names to look up with --type)");
  app.add_option("--ds-for", ds_zone, "Print the DS records (SHA-256) the parent must publish for the SEP keys in this zone file, and exit");
  app.add_option("--trust-anchor", opt.trust_anchor_file, "DS/DNSKEY trust anchor file")->capture_default_str();
  app.add_option("--root-hints", opt.root_hints_file, "Root hints file (default: built-in)");
  app.add_option("--root-server", opt.root_stub, "Query this server (ADDR[@PORT]) for the root instead of priming")->allow_extra_args(false);
  app.add_option("--forwarder", opt.forwarders, "Forward queries to this recursive resolver (ADDR[@PORT])")->allow_extra_args(false);
  app.add_flag("--allow-loopback", opt.allow_loopback_servers, "Allow DNS servers on loopback addresses (lab)");
  app.add_option("--nodefault-zone", opt.nodefault_zones, "Do not answer this zone from built-in local data (e.g. test.)")->allow_extra_args(false);
  app.add_option("--timeout-ms", timeout_ms, "Per-lookup deadline")->capture_default_str();
  app.add_option("--retries", opt.retries, "Retries per upstream server after an error answer")->capture_default_str()->check(CLI::Range(1, 10));
  app.add_option("--failure-ttl", failure_ttl, "Seconds a failed lookup is remembered")->capture_default_str();
  app.add_option("--edns-buffer-size", opt.edns_buffer_size, "EDNS0 UDP payload size; larger answers come over TCP")
      ->capture_default_str()->check(CLI::Range(512, 4096));
  app.add_flag("!--no-ipv6", opt.use_ipv6_transport, "Do not query servers over IPv6");
  app.add_option("--log-file", opt.log_file, "libunbound's log (validation details)");
  app.add_option("--tlsa-port", dopt.tlsa_port, "Port in the TLSA name (_PORT._tcp)")->capture_default_str();
  app.add_option("--type", type, "Look the names up as this type (A, AAAA, MX, TLSA, CNAME, TXT) instead of resolving destinations");
  app.add_flag("--json", json, "One JSON object per line");
  app.add_option("--repeat", repeat, "Resolve everything this many times in one process (shows the cache)")->check(CLI::Range(1, 1000000));
  app.add_option("--interval", interval, "Seconds between repeats")->check(CLI::Range(0.0, 3600.0));
  bool mta_sts = false;
  mxedge::mta_sts::FetchOptions fetch_opt;
  int64_t fetch_timeout_ms = fetch_opt.total_timeout.count();
  app.add_flag("--mta-sts", mta_sts, "Discover, fetch and parse each domain's MTA-STS policy (RFC 8461) instead");
  app.add_option("--ca-file", fetch_opt.ca_file, "CA bundle for MTA-STS policy hosts (default: the system store)");
  app.add_option("--proxy", fetch_opt.proxy, "HTTPS proxy for MTA-STS fetches");
  app.add_option("--fetch-timeout-ms", fetch_timeout_ms, "Total time a policy fetch may take")->capture_default_str();
  std::string sts_cache_path, sts_purge;
  int64_t sts_txt_recheck = 300;
  app.add_option("--sts-cache", sts_cache_path, "With --mta-sts: keep policies in this SQLite cache (persistent)");
  app.add_option("--sts-txt-recheck", sts_txt_recheck, "Seconds between TXT id re-checks of a cached policy")->capture_default_str();
  app.add_option("--sts-purge", sts_purge, "Remove this domain from the --sts-cache and exit");
  bool sts_sweep = false, sts_maintain = false;
  int64_t sts_clock_offset = 0;
  app.add_flag("--sts-sweep", sts_sweep, "Evict expired and long-unused policies from the --sts-cache and exit");
  app.add_flag("--sts-maintain", sts_maintain,
               "Do the --sts-cache's periodic work once (sweep, then refresh policies close to expiry) and exit");
  app.add_option("--sts-clock-offset", sts_clock_offset, "Run the --sts-cache this many seconds in the future (tests)");
  std::string config_file;
  app.add_option("--config", config_file, "Take the resolver settings from this gateway configuration (flags given too win)");
  bool show_policy = false;
  std::string dane_mode, sts_mode;
  bool no_cleartext = false;
  app.add_flag("--policy", show_policy,
               "Compile each domain's delivery policy (connector modes x DNS x MTA-STS) as outbound delivery would");
  app.add_option("--dane-mode", dane_mode, "With --policy: the connector's DANE mode (default: the --config connector's, else opportunistic)")
      ->check(CLI::IsMember({"none", "opportunistic", "mandatory"}));
  app.add_option("--mta-sts-mode", sts_mode, "With --policy: the connector's MTA-STS mode")
      ->check(CLI::IsMember({"none", "opportunistic", "mandatory"}));
  app.add_flag("--no-cleartext", no_cleartext, "With --policy: the connector never delivers in cleartext");
  std::string check_domain;
  bool no_probe = false;
  app.add_option("--check", check_domain,
                 "Connectivity check of this domain: DNS, MTA-STS, live SMTP/TLS probes of its MX hosts, a verdict per "
                 "connector mode (exit 0 when the configured connector would deliver)");
  app.add_flag("--no-probe", no_probe, "With --check: DNS and MTA-STS only, no SMTP connections");
  std::string wizard_domain, next_cert, next_key;
  std::vector<std::string> wizard_mx;
  app.add_option("--wizard", wizard_domain,
                 "DNSSEC enablement wizard for this domain: DNSSEC/DS, MX, TLSA, MTA-STS and TLS-RPT against this gateway, "
                 "the records to publish and the cutover plan (exit 0 when everything is in place)");
  app.add_option("--mx", wizard_mx, "With --wizard: a gateway MX name (repeatable; default: the config's hostname)")
      ->allow_extra_args(false);
  app.add_option("--next-cert", next_cert, "With --wizard: the certificate (PEM chain) the gateway rolls to next");
  app.add_option("--next-key", next_key, "With --wizard: the key (PEM) the gateway rolls to next");
  CLI11_PARSE(app, argc, argv);
  mxedge::config::v1::Config gateway_config;
  if (!config_file.empty()) {
    auto loaded = mxedge::config::load_config_file(config_file, mxedge::config::kFilesNone);
    if (!loaded.ok()) {
      std::cerr << loaded.error_text();
      return 1;
    }
    gateway_config = *loaded.config;
    const auto& rc = loaded.config->resolver();
    ResolverOptions from = resolver_options(rc);
    // Flags the operator gave override the file.
    if (app.count("--trust-anchor") == 0) opt.trust_anchor_file = from.trust_anchor_file;
    if (app.count("--root-hints") == 0) opt.root_hints_file = from.root_hints_file;
    if (app.count("--forwarder") == 0) opt.forwarders = from.forwarders;
    if (app.count("--timeout-ms") == 0) timeout_ms = from.query_timeout.count();
    if (app.count("--retries") == 0) opt.retries = from.retries;
    if (app.count("--failure-ttl") == 0) failure_ttl = from.failure_ttl.count();
    if (app.count("--edns-buffer-size") == 0) opt.edns_buffer_size = from.edns_buffer_size;
    opt.cache_bytes = from.cache_bytes;
    opt.max_ttl = from.max_ttl;
    opt.max_negative_ttl = from.max_negative_ttl;
    opt.bogus_ttl = from.bogus_ttl;
    dopt.max_mx_hosts = destination_options(rc).max_mx_hosts;
    const auto& mc = loaded.config->mta_sts();
    const auto f = mxedge::mta_sts::fetch_options(mc);
    if (app.count("--ca-file") == 0) fetch_opt.ca_file = f.ca_file;
    if (app.count("--proxy") == 0) fetch_opt.proxy = f.proxy;
    if (app.count("--fetch-timeout-ms") == 0) fetch_timeout_ms = f.total_timeout.count();
    fetch_opt.connect_timeout = f.connect_timeout;
    if (app.count("--sts-txt-recheck") == 0) sts_txt_recheck = mxedge::mta_sts::cache_options(mc).txt_recheck.count();
  }
  if (!ds_zone.empty()) {
    std::ifstream in(ds_zone);
    if (!in) {
      std::cerr << "mxedge-resolve: cannot read " << ds_zone << "\n";
      return 1;
    }
    std::stringstream text;
    text << in.rdbuf();
    std::string err;
    auto ds = ds_for_zone_keys(text.str(), DsDigest::kSha256, &err);
    if (!err.empty() || ds.empty()) {
      std::cerr << "mxedge-resolve: " << ds_zone << ": " << (err.empty() ? "no DNSKEY with the SEP flag (257)" : err) << "\n";
      return 1;
    }
    for (const auto& d : ds) std::cout << d << "\n";
    return 0;
  }
  if (!check_domain.empty()) {
    // The analyzer's settings come from the configuration (defaults without one); flags given win.
    mxedge::analyzer::CheckSettings cs = mxedge::analyzer::check_settings(gateway_config);
    auto given = [&](const char* flag) { return app.count(flag) > 0; };
    if (given("--trust-anchor")) cs.resolver.trust_anchor_file = opt.trust_anchor_file;
    if (given("--root-hints")) cs.resolver.root_hints_file = opt.root_hints_file;
    if (given("--root-server")) cs.resolver.root_stub = opt.root_stub;
    if (given("--forwarder")) cs.resolver.forwarders = opt.forwarders;
    if (given("--allow-loopback")) cs.resolver.allow_loopback_servers = true;
    if (given("--nodefault-zone")) cs.resolver.nodefault_zones = opt.nodefault_zones;
    if (given("--timeout-ms")) cs.resolver.query_timeout = std::chrono::milliseconds(timeout_ms);
    if (given("--retries")) cs.resolver.retries = opt.retries;
    if (given("--edns-buffer-size")) cs.resolver.edns_buffer_size = opt.edns_buffer_size;
    if (given("--no-ipv6")) cs.resolver.use_ipv6_transport = false;
    if (given("--log-file")) cs.resolver.log_file = opt.log_file;
    if (given("--ca-file")) cs.fetch.ca_file = fetch_opt.ca_file;
    if (given("--proxy")) cs.fetch.proxy = fetch_opt.proxy;
    if (given("--fetch-timeout-ms")) cs.fetch.total_timeout = std::chrono::milliseconds(fetch_timeout_ms);
    cs.fetch.connect_timeout = std::min(cs.fetch.connect_timeout, cs.fetch.total_timeout);
    mxedge::mgmt::v1::CheckRequest request;
    request.set_domain(check_domain);
    request.set_no_probe(no_probe);
    const auto report = mxedge::analyzer::run_check(gateway_config, request, cs);
    if (json) {
      print_proto_json(report);
    } else {
      std::cout << mxedge::analyzer::render_check_text(report);
    }
    std::cout.flush();
    return mxedge::analyzer::would_deliver(report) ? 0 : 1;
  }
  if (!wizard_domain.empty()) {
    // The wizard builds its resolver and fetcher from the configuration: flags given go into a copy.
    mxedge::config::v1::Config wc = gateway_config;
    auto given = [&](const char* flag) { return app.count(flag) > 0; };
    auto* rc = wc.mutable_resolver();
    auto ms = [](int64_t v, google::protobuf::Duration* d) {
      d->set_seconds(v / 1000);
      d->set_nanos(static_cast<int32_t>(v % 1000) * 1000000);
    };
    if (given("--trust-anchor")) rc->set_trust_anchor_file(opt.trust_anchor_file);
    if (given("--root-hints")) rc->set_root_hints_file(opt.root_hints_file);
    if (given("--root-server")) { rc->clear_root_servers(); for (const auto& x : opt.root_stub) rc->add_root_servers(x); }
    if (given("--forwarder")) { rc->clear_forwarders(); for (const auto& x : opt.forwarders) rc->add_forwarders(x); }
    if (given("--nodefault-zone")) { rc->clear_nodefault_zones(); for (const auto& x : opt.nodefault_zones) rc->add_nodefault_zones(x); }
    if (given("--timeout-ms")) ms(timeout_ms, rc->mutable_query_timeout());
    if (given("--retries")) rc->set_retries(static_cast<uint32_t>(opt.retries));
    if (given("--edns-buffer-size")) rc->set_edns_buffer_size(static_cast<uint32_t>(opt.edns_buffer_size));
    if (given("--no-ipv6")) rc->set_ipv6_transport(false);
    if (given("--ca-file")) wc.mutable_mta_sts()->set_ca_file(fetch_opt.ca_file);
    if (given("--proxy")) wc.mutable_mta_sts()->set_proxy(fetch_opt.proxy);
    if (given("--fetch-timeout-ms")) ms(fetch_timeout_ms, wc.mutable_mta_sts()->mutable_fetch_timeout());
    mxedge::mgmt::v1::WizardRequest request;
    request.set_domain(wizard_domain);
    for (const std::string& m : wizard_mx) request.add_mx_names(m);
    request.set_next_cert_file(next_cert);
    request.set_next_key_file(next_key);
    const auto report = mxedge::wizard::run_wizard(wc, request);
    if (json) {
      print_proto_json(report);
    } else {
      std::cout << mxedge::wizard::render_wizard_text(report);
    }
    std::cout.flush();
    if (!report.error().empty()) std::cerr << "mxedge-resolve: " << report.error() << "\n";
    return report.ready() ? 0 : 1;
  }
  if (names.empty() && sts_purge.empty() && !sts_sweep && !sts_maintain) {
    std::cerr << "mxedge-resolve: name a domain to resolve (see --help)\n";
    return 2;
  }
  opt.query_timeout = std::chrono::milliseconds(timeout_ms);
  opt.failure_ttl = std::chrono::seconds(failure_ttl);
  int qtype = 0;
  if (!type.empty() && (qtype = parse_type(type)) < 0) {
    std::cerr << "mxedge-resolve: unknown type '" << type << "' (A, AAAA, MX, TLSA, CNAME, TXT)\n";
    return 2;
  }

  std::string error;
  auto resolver = Resolver::create(opt, &error);
  if (!resolver) {
    std::cerr << "mxedge-resolve: " << error << "\n";
    return 1;
  }
  DestinationResolver destinations(*resolver, dopt);
  fetch_opt.total_timeout = std::chrono::milliseconds(fetch_timeout_ms);
  fetch_opt.connect_timeout = std::min(fetch_opt.connect_timeout, fetch_opt.total_timeout);
  mxedge::mta_sts::PolicyFetcher fetcher(*resolver, fetch_opt);
  mxedge::mta_sts::StsClient sts(*resolver, fetcher);
  std::unique_ptr<mxedge::mta_sts::PolicyCache> sts_cache;
  if (!sts_cache_path.empty()) {
    mxedge::mta_sts::CacheOptions copt;
    copt.path = sts_cache_path;
    copt.txt_recheck = std::chrono::seconds(sts_txt_recheck);
    copt.now = [sts_clock_offset] { return static_cast<int64_t>(::time(nullptr)) + sts_clock_offset; };
    std::string err;
    sts_cache = mxedge::mta_sts::PolicyCache::open(sts, copt, &err);
    if (!sts_cache) {
      std::cerr << "mxedge-resolve: " << err << "\n";
      return 1;
    }
    if (sts_sweep) {
      const size_t n = sts_cache->sweep();
      if (json) std::cout << nlohmann::json{{"swept", n}, {"entries", sts_cache->size()}}.dump() << "\n";
      else std::cout << "evicted " << n << ", " << sts_cache->size() << " left\n";
      return 0;
    }
    if (sts_maintain) {
      const size_t before = sts_cache->size();
      const size_t started = sts_cache->maintain();
      fetcher.run_until([&] { return !sts_cache->refreshing(); });
      const auto& c = sts_cache->counters();
      if (json) {
        std::cout << nlohmann::json{{"swept", before - sts_cache->size()}, {"refreshes_started", started},
                                    {"refreshed", c.refreshes}, {"fetch_failures", c.fetch_failures},
                                    {"entries", sts_cache->size()}}.dump() << "\n";
      } else {
        std::cout << "evicted " << before - sts_cache->size() << ", refreshed " << c.refreshes << " of " << started
                  << " due, " << c.fetch_failures << " failed, " << sts_cache->size() << " left\n";
      }
      return 0;
    }
    if (!sts_purge.empty()) {
      const bool had = sts_cache->purge(sts_purge);
      if (json) std::cout << nlohmann::json{{"purged", sts_purge}, {"was_cached", had}}.dump() << "\n";
      else std::cout << (had ? "purged " : "not cached: ") << sts_purge << "\n";
      return 0;
    }
  }
  std::mt19937 rng(std::random_device{}());
  using Clock = std::chrono::steady_clock;

  for (int round = 0; round < repeat; ++round) {
    if (round > 0 && interval > 0) std::this_thread::sleep_for(std::chrono::duration<double>(interval));
    size_t done = 0;
    for (const std::string& name : names) {
      const auto start = Clock::now();
      auto report = [&, start, round](nlohmann::json j, const std::string& text, bool from_cache) {
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        if (json) {
          j["round"] = round;
          j["from_cache"] = from_cache;
          j["elapsed_ms"] = ms;
          std::cout << j.dump() << "\n";
        } else {
          std::cout << text << (from_cache ? "  (cached)" : "") << "\n";
        }
        ++done;
      };
      if (show_policy) {
        // The connector for this domain, with the modes given on the command line on top.
        mxedge::config::v1::Connector connector = mxedge::config::select_connector(gateway_config, normalize_name(name));
        auto mode = [](const std::string& m) {
          return m == "none" ? mxedge::config::v1::CONNECTOR_MODE_NONE
                             : m == "mandatory" ? mxedge::config::v1::CONNECTOR_MODE_MANDATORY : mxedge::config::v1::CONNECTOR_MODE_OPPORTUNISTIC;
        };
        if (!dane_mode.empty()) connector.set_dane_mode(mode(dane_mode));
        if (!sts_mode.empty()) connector.set_mta_sts_mode(mode(sts_mode));
        if (no_cleartext) connector.set_allow_cleartext(false);
        auto state = std::make_shared<std::pair<DestinationResolver::Result, std::optional<mxedge::mta_sts::StsResult>>>();
        const bool want_sts = connector.mta_sts_mode() != mxedge::config::v1::CONNECTOR_MODE_NONE;
        auto finish = [&, report, state, connector, name, want_sts]() {
          if (!state->first || (want_sts && !state->second)) return;
          const int64_t now = static_cast<int64_t>(::time(nullptr)) + sts_clock_offset;
          int64_t sts_expires = 0;
          if (want_sts && sts_cache && state->second->kind == mxedge::mta_sts::StsResult::kPolicy) {
            if (auto c = sts_cache->cached(state->second->domain)) sts_expires = c->expires_at;
          }
          if (want_sts && sts_expires == 0 && state->second->kind == mxedge::mta_sts::StsResult::kPolicy)
            sts_expires = now + state->second->policy.max_age;
          const mxedge::mta_sts::StsResult* sts_result = want_sts ? &*state->second : nullptr;
          auto p = mxedge::policy_compiler::compile(connector, normalize_name(name), *state->first,
                                                    mxedge::policy_compiler::StsInput{sts_result, sts_expires}, now);
          report(mxedge::policy_compiler::to_json(p), mxedge::policy_compiler::to_text(p), false);
        };
        destinations.resolve(name, [state, finish](const DestinationResolver::Result& d, bool) {
          state->first = d;
          finish();
        });
        if (want_sts) {
          auto on = [state, finish](const mxedge::mta_sts::StsResult& r) {
            state->second = r;
            finish();
          };
          if (sts_cache) sts_cache->lookup(name, on);
          else sts.lookup(name, on);
        }
      } else if (mta_sts) {
        const uint64_t hits_before = sts_cache ? sts_cache->counters().hits : 0;
        auto on_sts = [&, report, hits_before](const mxedge::mta_sts::StsResult& r) {
          nlohmann::json j{{"domain", r.domain}, {"kind", mxedge::mta_sts::to_string(r.kind)}, {"id", r.id}, {"reason", r.reason}};
          std::string text = r.domain + ": MTA-STS " + std::string(mxedge::mta_sts::to_string(r.kind));
          if (r.kind == mxedge::mta_sts::StsResult::kPolicy) {
            j["mode"] = mxedge::policy::to_string(r.policy.mode);
            j["max_age"] = r.policy.max_age;
            j["mx"] = r.policy.mx;
            text += " id " + r.id + ", mode " + std::string(mxedge::policy::to_string(r.policy.mode)) + ", max_age " +
                    std::to_string(r.policy.max_age);
            for (const auto& m : r.policy.mx) text += "\n  mx: " + m;
          } else {
            text += " (" + r.reason + ")";
          }
          report(std::move(j), text, sts_cache && sts_cache->counters().hits > hits_before);
        };
        if (sts_cache) sts_cache->lookup(name, on_sts);
        else sts.lookup(name, on_sts);
      } else if (qtype) {
        resolver->lookup(name, static_cast<uint16_t>(qtype), [&, report](const Resolver::Result& r, bool cached) {
          auto j = to_json(*r);
          std::string text = r->qname + " " + type_name(r->qtype) + ": " + std::string(to_string(r->security)) + " " +
                             std::string(to_string(r->kind)) + (r->why.empty() ? "" : " (" + r->why + ")");
          for (const auto& rec : j["records"]) text += "\n  " + rec.get<std::string>();
          report(std::move(j), text, cached);
        });
      } else {
        destinations.resolve(name, [&, report](const DestinationResolver::Result& d, bool cached) {
          auto j = to_json(*d);
          nlohmann::json order = nlohmann::json::array();
          for (size_t i : d->delivery_order(rng)) order.push_back(d->hosts[i].name);
          j["delivery_order"] = order;
          report(std::move(j), to_text(*d), cached);
        });
      }
    }
    fetcher.run_until([&] { return done == names.size(); });
    fetcher.run_until([] { return false; });  // background work (policy re-checks) finishes too
    if (json) {
      nlohmann::json s{{"stats", true},
                       {"round", round},
                       {"lookup_cache", to_json(resolver->cache_stats())},
                       {"destination_cache", to_json(destinations.cache_stats())},
                       {"resolver", to_json(resolver->counters())}};
      if (sts_cache) {
        const auto& c = sts_cache->counters();
        s["sts_cache"] = {{"entries", sts_cache->size()}, {"lookups", c.lookups}, {"hits", c.hits}, {"fetches", c.fetches},
                          {"fetch_failures", c.fetch_failures}, {"txt_checks", c.txt_checks}, {"refreshes", c.refreshes},
                          {"evictions", c.evictions}};
      }
      std::cout << s.dump() << "\n";
    }
    std::cout.flush();
  }
  return 0;
}
