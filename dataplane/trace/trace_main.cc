// mxedge-trace: the message trace of the data plane's outbound deliveries (dataplane/trace), read
// from the workers' trace databases under the spool directory. Per message and per attempt: when,
// what happened, destination, MX host and address, the policy's requirement and modes, TLS version
// and cipher, how the certificate was verified, the RFC 8460 result type of a failure, the reply.
//
//   mxedge-trace --config /etc/mxedge/mxedge.yaml --qid 660E5FAE5E8FE010000
//   mxedge-trace --spool /var/spool/mxedge --domain example.org --since 3600 --json
// GCC 12's -Wnull-dereference reports a false positive inside CLI11's inline CLI::detail::split.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include <chrono>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "dataplane/trace/trace_store.h"
#include "policy/config_loader.h"

int main(int argc, char** argv) {
  CLI::App app{"Show the outbound message trace (delivery attempts, policy, TLS, verification, outcome)."};
  std::string spool, config_file;
  mxedge::trace::TraceQuery q;
  int64_t since_s = 0;
  bool json = false;
  app.add_option("--spool", spool, "The data plane's spool directory");
  app.add_option("--config", config_file, "Take the spool directory from this gateway configuration");
  app.add_option("--qid", q.qid, "One message (its queue id)");
  app.add_option("--domain", q.domain, "One destination domain");
  app.add_option("--since", since_s, "Only events of the last SECONDS");
  app.add_option("--limit", q.limit, "At most this many events")->capture_default_str();
  app.add_flag("--json", json, "One JSON object per event");
  CLI11_PARSE(app, argc, argv);
  if (spool.empty() && !config_file.empty()) {
    auto loaded = mxedge::config::load_config_file(config_file, mxedge::config::kFilesNone);
    if (!loaded.ok()) {
      std::cerr << loaded.error_text();
      return 1;
    }
    spool = loaded.config->spool().directory();
  }
  if (spool.empty()) {
    std::cerr << "mxedge-trace: give --spool DIR or --config FILE\n";
    return 2;
  }
  const auto dbs = mxedge::trace::TraceStore::databases(spool);
  if (dbs.empty()) {
    std::cerr << "mxedge-trace: no trace databases (trace-w<k>.db) in " << spool << "\n";
    return 1;
  }
  const int64_t now_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (since_s > 0) q.since_us = now_us - since_s * 1000000;
  std::string error;
  const auto events = mxedge::trace::TraceStore::query(dbs, q, &error);
  if (!error.empty()) {
    std::cerr << "mxedge-trace: " << error << "\n";
    return 1;
  }
  for (const auto& e : events) {
    if (json) {
      nlohmann::json j{{"ts_us", e.ts_us}, {"qid", e.qid}, {"event", e.event}, {"domain", e.domain}, {"rcpts", e.rcpts},
                       {"host", e.host}, {"address", e.address}, {"requirement", e.requirement}, {"dane_mode", e.dane_mode},
                       {"mta_sts_mode", e.sts_mode}, {"dnssec", e.dnssec}, {"mta_sts", e.mta_sts}, {"tls", e.tls_version},
                       {"cipher", e.cipher}, {"verification", e.verification}, {"dane_usage", e.dane_usage},
                       {"dane_depth", e.dane_depth}, {"result_type", e.result_type}, {"detail", e.detail}, {"worker", e.worker}};
      std::cout << j.dump() << "\n";
      continue;
    }
    const std::time_t t = static_cast<std::time_t>(e.ts_us / 1000000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[32];
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    std::cout << ts << " " << e.event << " " << (e.qid.empty() ? "-" : e.qid) << " " << e.domain;
    if (!e.host.empty()) std::cout << " " << e.host << "[" << e.address << "] " << e.requirement;
    if (!e.tls_version.empty()) std::cout << " " << e.tls_version << (e.cipher.empty() ? "" : " " + e.cipher);
    if (!e.verification.empty() && e.verification != "none") {
      std::cout << " verified=" << e.verification;
      if (e.dane_usage >= 0) std::cout << " usage=" << e.dane_usage << " depth=" << e.dane_depth;
    }
    if (!e.dnssec.empty()) std::cout << " dnssec=" << e.dnssec << " mta_sts=" << e.mta_sts;
    if (!e.result_type.empty()) std::cout << " [" << e.result_type << "]";
    if (!e.detail.empty()) std::cout << " : " << e.detail;
    std::cout << "\n";
  }
  return events.empty() && (!q.qid.empty() || !q.domain.empty()) ? 3 : 0;
}
