// mxedge-bench-resolver: destination resolution (MX, then A+AAAA of each MX host, then TLSA of each
// host with secure addresses) by mxedge's resolver and by an unbound daemon answering the same
// queries, in one run. Driven by bench_resolver.py, which starts the DNS lab and unbound; see there
// for what each figure means. Prints one JSON object per measurement on stdout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/resolver/destination.h"
#include "controlplane/resolver/dns_answer.h"
#include "controlplane/resolver/resolver.h"
#include "tests/load/bench_figures.h"

namespace {

using namespace mxedge::resolver;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

using mxedge::bench::latency_summary;

// ---------------------------------------------------------------------------------------------
// unbound side: a minimal stub client (UDP, EDNS0 with DO, AD bit read from the reply).

class StubClient {
 public:
  explicit StubClient(const std::string& server) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(53);
    if (inet_pton(AF_INET, server.c_str(), &sa.sin_addr) != 1) throw std::runtime_error("bad server " + server);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) throw std::runtime_error("connect");
  }
  ~StubClient() { ::close(fd_); }

  struct Answer {
    bool ad = false;
    int rcode = -1;
    ParsedAnswer parsed;
  };

  // Sends every query at once and waits for all answers (3 s timeout each batch).
  std::vector<Answer> ask(const std::vector<std::pair<std::string, uint16_t>>& qs) {
    std::vector<Answer> out(qs.size());
    std::map<uint16_t, size_t> ids;
    for (size_t i = 0; i < qs.size(); ++i) {
      const uint16_t id = next_id_++;
      ids[id] = i;
      auto q = build(id, qs[i].first, qs[i].second);
      if (::send(fd_, q.data(), q.size(), 0) < 0) throw std::runtime_error("send");
    }
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    uint8_t buf[65536];
    while (!ids.empty()) {
      const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, left) <= 0) throw std::runtime_error("unbound did not answer within 3 s");
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 12) continue;
      const uint16_t id = static_cast<uint16_t>(buf[0] << 8 | buf[1]);
      auto it = ids.find(id);
      if (it == ids.end()) continue;
      Answer& a = out[it->second];
      a.ad = buf[3] & 0x20;
      a.rcode = buf[3] & 0x0f;
      std::string err;
      parse_answer({buf, static_cast<size_t>(n)}, qs[it->second].first, qs[it->second].second, &a.parsed, &err);
      ids.erase(it);
    }
    return out;
  }

  // The destination ladder: MX; A and AAAA of every host; TLSA of every host whose addresses are
  // secure (AD). Returns the number of hosts with usable-looking TLSA (a sanity figure).
  int destination(const std::string& domain) {
    auto mx = ask({{domain, kTypeMx}});
    std::vector<std::string> hosts;
    for (const MxRecord& m : mx[0].parsed.mx) hosts.push_back(m.exchange);
    if (hosts.empty()) hosts.push_back(domain);
    std::vector<std::pair<std::string, uint16_t>> addr;
    for (const auto& h : hosts) {
      addr.emplace_back(h, kTypeA);
      addr.emplace_back(h, kTypeAaaa);
    }
    auto a = ask(addr);
    std::vector<std::pair<std::string, uint16_t>> tlsa;
    for (size_t i = 0; i < hosts.size(); ++i) {
      if (a[2 * i].ad && a[2 * i + 1].ad) tlsa.emplace_back("_25._tcp." + hosts[i], kTypeTlsa);
    }
    int usable = 0;
    for (const auto& t : ask(tlsa)) usable += t.ad && !t.parsed.tlsa.empty();
    return usable;
  }

  // Queries answered per second with `window` in flight, for `seconds`.
  double throughput(const std::vector<std::pair<std::string, uint16_t>>& qs, size_t window, double seconds) {
    uint8_t buf[65536];
    size_t sent = 0, got = 0, inflight = 0;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    while (Clock::now() < end) {
      while (inflight < window) {
        const auto& q = qs[sent++ % qs.size()];
        auto w = build(next_id_++, q.first, q.second);
        if (::send(fd_, w.data(), w.size(), 0) < 0) throw std::runtime_error("send");
        ++inflight;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) throw std::runtime_error("unbound stopped answering");
      while (::recv(fd_, buf, sizeof buf, MSG_DONTWAIT) > 0) {
        ++got;
        --inflight;
      }
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    // drain
    pollfd p{fd_, POLLIN, 0};
    while (inflight > 0 && ::poll(&p, 1, 200) > 0) {
      if (::recv(fd_, buf, sizeof buf, 0) > 0) --inflight;
    }
    return static_cast<double>(got) / secs;
  }

 private:
  static std::vector<uint8_t> build(uint16_t id, const std::string& name, uint16_t type) {
    std::vector<uint8_t> m{static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1};
    size_t start = 0;
    while (start < name.size()) {
      size_t dot = name.find('.', start);
      if (dot == std::string::npos) dot = name.size();
      m.push_back(static_cast<uint8_t>(dot - start));
      m.insert(m.end(), name.begin() + static_cast<std::ptrdiff_t>(start), name.begin() + static_cast<std::ptrdiff_t>(dot));
      start = dot + 1;
    }
    m.push_back(0);
    const uint8_t tail[] = {static_cast<uint8_t>(type >> 8), static_cast<uint8_t>(type), 0, 1,
                            0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0};  // OPT: 1232 bytes, DO
    m.insert(m.end(), tail, tail + sizeof tail);
    return m;
  }

  int fd_ = -1;
  uint16_t next_id_ = 1;
};

// ---------------------------------------------------------------------------------------------
// mxedge side

struct Mx {
  std::unique_ptr<Resolver> resolver;
  std::unique_ptr<DestinationResolver> destinations;
};

Mx make_mx(const ResolverOptions& opt) {
  std::string err;
  Mx m;
  m.resolver = Resolver::create(opt, &err);
  if (!m.resolver) throw std::runtime_error(err);
  m.destinations = std::make_unique<DestinationResolver>(*m.resolver, DestinationOptions{});
  // Finalize libunbound (thread, anchors, modules) without caching anything of the lab: "localhost"
  // is answered from libunbound's built-in local data.
  bool done = false;
  m.resolver->lookup("localhost", kTypeA, [&](const Resolver::Result&, bool) { done = true; });
  m.resolver->run_until([&] { return done; });
  return m;
}

double mx_resolve(Mx& m, const std::string& domain, int* usable) {
  const auto t = Clock::now();
  bool done = false;
  double ms = 0;
  m.destinations->resolve(domain, [&](const DestinationResolver::Result& d, bool) {
    ms = ms_since(t);
    done = true;
    *usable = 0;
    for (const MxHost& h : d->hosts) *usable += h.dane() == DaneState::kAuthenticate;
  });
  m.resolver->run_until([&] { return done; });
  if (!done) throw std::runtime_error("mxedge did not resolve " + domain);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::cerr << "usage: mxedge-bench-resolver ANCHOR HINTS UNBOUND_ADDR UNBOUND_CONTROL_CMD NAMES_FILE COLD_EMPTY_N [WARM_SECONDS]\n";
    return 2;
  }
  ResolverOptions opt;
  opt.trust_anchor_file = argv[1];
  opt.root_hints_file = argv[2];
  const std::string unbound_addr = argv[3];
  const std::string flush_cmd = argv[4];  // a shell command that empties unbound's caches
  const std::vector<std::string> names = mxedge::bench::read_names(argv[5]);
  const size_t cold_empty_n = std::stoul(argv[6]);
  const double warm_seconds = argc > 7 ? std::stod(argv[7]) : 2.0;
  opt.allow_loopback_servers = true;
  opt.nodefault_zones = {"test."};
  opt.use_ipv6_transport = false;
  opt.query_timeout = std::chrono::milliseconds(5000);
  auto emit = [](nlohmann::json j) { std::cout << j.dump() << std::endl; };

  StubClient stub(unbound_addr);
  auto flush_unbound = [&] {
    if (std::system(flush_cmd.c_str()) != 0) throw std::runtime_error("flushing unbound failed: " + flush_cmd);
  };

  // (1) cold, empty cache: a new libunbound context per destination vs unbound flushed each time.
  // Interleaved so that both sides see the same machine state.
  {
    std::vector<double> mx_ms, ub_ms;
    int bad = 0;
    for (size_t i = 0; i < cold_empty_n; ++i) {
      const std::string& d = names[i % names.size()];
      Mx m = make_mx(opt);
      int usable = 0;
      mx_ms.push_back(mx_resolve(m, d, &usable));
      bad += usable == 0;
      flush_unbound();
      const auto t = Clock::now();
      bad += stub.destination(d) == 0;
      ub_ms.push_back(ms_since(t));
    }
    emit({{"measure", "cold_empty_cache"}, {"mxedge", latency_summary(mx_ms)}, {"unbound", latency_summary(ub_ms)}, {"not_dane", bad}});
  }

  // (2) cold destination, warm infrastructure: each destination resolved once, by long-lived
  // resolvers whose root/test. keys and delegations are cached (primed with one destination).
  const size_t half = names.size() / 2;
  {
    Mx m = make_mx(opt);
    flush_unbound();
    int usable = 0;
    mx_resolve(m, names[0], &usable);
    stub.destination(names[0]);
    std::vector<double> mx_ms, ub_ms;
    int bad = 0;
    for (size_t i = 1; i < half; ++i) {
      mx_ms.push_back(mx_resolve(m, names[i], &usable));
      bad += usable == 0;
      const auto t = Clock::now();
      bad += stub.destination(names[i]) == 0;
      ub_ms.push_back(ms_since(t));
    }
    emit({{"measure", "cold_destination"}, {"mxedge", latency_summary(mx_ms)}, {"unbound", latency_summary(ub_ms)}, {"not_dane", bad}});

    // (3) warm: the same destinations again, answered from cache. mxedge: the whole destination
    // from its destination cache; unbound: the same four queries answered from its cache.
    std::vector<double> mx_warm, ub_warm;
    for (size_t i = 1; i < half; ++i) {
      const auto t0 = Clock::now();
      mx_resolve(m, names[i], &usable);
      mx_warm.push_back(ms_since(t0));
      const auto t1 = Clock::now();
      stub.destination(names[i]);
      ub_warm.push_back(ms_since(t1));
    }
    emit({{"measure", "warm_destination_latency"}, {"mxedge", latency_summary(mx_warm)}, {"unbound", latency_summary(ub_warm)}});

    // (4) warm throughput on one core: mxedge's cached() lookups per second (the data plane's
    // question "what is the policy input for this domain?"), and unbound's cached answers per second
    // with 64 queries in flight (four per destination).
    std::vector<std::string> warm(names.begin() + 1, names.begin() + static_cast<std::ptrdiff_t>(half));
    size_t lookups = 0, hits = 0;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(warm_seconds);
    while (Clock::now() < end) {
      for (int k = 0; k < 4096; ++k) {
        hits += m.destinations->cached(warm[lookups % warm.size()]) != nullptr;
        ++lookups;
      }
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::vector<std::pair<std::string, uint16_t>> qs;
    for (const auto& d : warm) {
      qs.emplace_back(d, kTypeMx);
      qs.emplace_back("mx." + d, kTypeA);
      qs.emplace_back("mx." + d, kTypeAaaa);
      qs.emplace_back("_25._tcp.mx." + d, kTypeTlsa);
    }
    const double ub_qps = stub.throughput(qs, 64, warm_seconds);
    emit({{"measure", "warm_throughput"},
          {"mxedge_destinations_per_s", static_cast<double>(lookups) / secs},
          {"mxedge_hit_rate", static_cast<double>(hits) / static_cast<double>(lookups)},
          {"unbound_queries_per_s", ub_qps},
          {"unbound_destinations_per_s", ub_qps / 4}});
  }
  return 0;
}
