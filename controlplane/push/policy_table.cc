#include "controlplane/push/policy_table.h"

#include <arpa/inet.h>

#include <algorithm>

#include "controlplane/policy_compiler/compiler.h"
#include "policy/connectors.h"
#include "policy/duration.h"
#include "policy/log.h"
#include "policy/policy_codec.h"

namespace mxedge::push {

namespace pb = mxedge::policy::v1;

PolicyTable::PolicyTable(const config::v1::Config& config, resolver::DestinationResolver& destinations,
                         mta_sts::PolicyCache* sts_cache, std::function<int64_t()> now)
    : config_(config), destinations_(destinations), sts_cache_(sts_cache), now_(std::move(now)) {}

std::shared_ptr<const policy::DestinationPolicy> PolicyTable::find(const std::string& domain) const {
  auto it = entries_.find(domain);
  return it == entries_.end() ? nullptr : it->second.policy;
}

void PolicyTable::request(const std::string& domain_in) {
  ++counters_.requests;
  const std::string domain = resolver::normalize_name(domain_in);
  if (domain.empty() || domain.size() > 253) return;
  Entry& e = entries_[domain];
  e.used_at = now_();
  if (e.compiling) return;
  if (e.policy && e.policy->expires_at > e.used_at) {
    // The data plane asked although a fresh policy exists (it restarted, or missed a delta): send it
    // again so the answer is never lost.
    publish({e.policy}, {});
    return;
  }
  compile(domain);
}

void PolicyTable::compile(const std::string& domain) {
  Entry& e = entries_[domain];
  e.compiling = true;
  e.generation = ++generations_;
  const uint64_t generation = e.generation;
  ++compiling_;
  const config::v1::Connector& connector = config::select_connector(config_, domain);
  if (!connector.smart_host().empty()) {
    compile_smart_host(domain, generation, connector);
    return;
  }
  const bool want_sts = sts_cache_ != nullptr && connector.mta_sts_mode() != config::v1::CONNECTOR_MODE_NONE;
  struct Join {
    std::shared_ptr<const resolver::DestinationResult> dest;
    std::optional<mta_sts::StsResult> sts;
    bool want_sts = false;
  };
  auto join = std::make_shared<Join>();
  join->want_sts = want_sts;
  auto done = [this, domain, generation, join] {
    if (!join->dest || (join->want_sts && !join->sts)) return;
    int64_t sts_expires = 0;
    if (join->sts && join->sts->kind == mta_sts::StsResult::kPolicy) {
      auto cached = sts_cache_->cached(domain);
      sts_expires = cached ? cached->expires_at : now_() + join->sts->policy.max_age;
    }
    finish(domain, generation, join->dest, join->sts ? &*join->sts : nullptr, sts_expires, 0);
  };
  destinations_.resolve(domain, [join, done](const resolver::DestinationResolver::Result& d, bool) {
    join->dest = d;
    done();
  });
  if (want_sts) {
    sts_cache_->lookup(domain, [join, done](const mta_sts::StsResult& r) {
      join->sts = r;
      done();
    });
  }
}

// "host", "host:port", "192.0.2.1", "192.0.2.1:587", "[2001:db8::1]:587", "2001:db8::1".
bool PolicyTable::parse_smart_host(const std::string& text, std::string* host, uint16_t* port) {
  *port = 25;
  std::string h = text;
  std::string p;
  bool has_port = false;
  if (!h.empty() && h.front() == '[') {
    const size_t close = h.find(']');
    if (close == std::string::npos) return false;
    if (h.size() > close + 1) {
      if (h[close + 1] != ':') return false;
      has_port = true;
      p = h.substr(close + 2);
    }
    h = h.substr(1, close - 1);
  } else if (std::count(h.begin(), h.end(), ':') == 1) {
    has_port = true;
    p = h.substr(h.find(':') + 1);
    h = h.substr(0, h.find(':'));
  }
  if (has_port) {
    if (p.empty()) return false;
    if (p.size() > 5 || !std::all_of(p.begin(), p.end(), ::isdigit) || std::stoul(p) == 0 || std::stoul(p) > 65535) return false;
    *port = static_cast<uint16_t>(std::stoul(p));
  }
  *host = h;
  return !h.empty();
}

void PolicyTable::compile_smart_host(const std::string& domain, uint64_t generation, const config::v1::Connector& connector) {
  std::string host;
  uint16_t port = 25;
  if (!parse_smart_host(connector.smart_host(), &host, &port)) {
    auto d = std::make_shared<resolver::DestinationResult>();
    d->domain = domain;
    d->mx_state = resolver::MxState::kFailure;
    d->why = "invalid smart_host '" + connector.smart_host() + "'";
    finish(domain, generation, d, nullptr, 0, 0);
    return;
  }
  unsigned char buf[16];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1) {
    // An address: nothing to resolve, and no DANE (TLSA needs a name).
    auto d = std::make_shared<resolver::DestinationResult>();
    d->domain = domain;
    d->mx_state = resolver::MxState::kNoMx;
    d->mx_security = resolver::Security::kSecure;
    d->ttl = 3600;
    resolver::MxHost h;
    h.name = host;
    h.address_security = resolver::Security::kInsecure;
    resolver::AddressAnswer& a = host.find(':') == std::string::npos ? h.a : h.aaaa;
    a.security = resolver::Security::kInsecure;
    a.kind = resolver::AnswerKind::kData;
    a.addresses.push_back(host);
    d->hosts.push_back(std::move(h));
    finish(domain, generation, d, nullptr, 0, port);
    return;
  }
  destinations_.resolve_host(host, port, [this, domain, generation, port](const resolver::DestinationResolver::Result& d, bool) {
    finish(domain, generation, d, nullptr, 0, port);
  });
}

void PolicyTable::finish(const std::string& domain, uint64_t generation, std::shared_ptr<const resolver::DestinationResult> dest,
                         const mta_sts::StsResult* sts, int64_t sts_expires, uint16_t smart_host_port) {
  auto it = entries_.find(domain);
  if (it == entries_.end() || !it->second.compiling || it->second.generation != generation) return;  // purged meanwhile
  Entry& e = it->second;
  e.compiling = false;
  --compiling_;
  ++counters_.compilations;
  const int64_t now = now_();
  const config::v1::Connector& connector = config::select_connector(config_, domain);
  auto p = std::make_shared<policy::DestinationPolicy>(
      policy_compiler::compile(connector, domain, *dest, policy_compiler::StsInput{sts, sts_expires}, now));
  if (smart_host_port != 0) {
    for (auto& h : p->hosts) h.port = smart_host_port;
    p->sts = "not-applicable (smart host " + connector.smart_host() + ")";
  }
  if (p->expires_at <= now) p->expires_at = now + 1;  // a policy is usable for at least a moment
  p->version = version_ + 1;
  log::info("policy.compiled")
      .kv("domain", domain)
      .kv("connector", p->connector)
      .kv("verdict", policy::to_string(p->verdict))
      .kv("hosts", static_cast<uint64_t>(p->hosts.size()))
      .kv("dnssec", p->dnssec)
      .kv("mta_sts", p->sts)
      .kv("ttl", p->expires_at - now)
      .kv("reason", p->reason);
  e.policy = p;
  publish({p}, {});
}

void PolicyTable::tick() {
  const int64_t now = now_();
  const int64_t idle = config::duration_ms(config_.outbound().policy_idle()) / 1000;
  std::vector<std::string> removed;
  std::vector<std::string> recompile;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (!e.compiling && now - e.used_at >= idle) {
      if (e.policy) removed.push_back(it->first);
      ++counters_.withdrawals;
      it = entries_.erase(it);
      continue;
    }
    if (!e.compiling && e.policy && e.policy->expires_at <= now) recompile.push_back(it->first);
    ++it;
  }
  if (!removed.empty()) publish({}, std::move(removed));
  for (const auto& d : recompile) compile(d);
}

bool PolicyTable::refresh(const std::string& domain) {
  Entry& e = entries_[domain];
  e.used_at = now_();
  if (e.compiling) return false;
  log::info("policy.refresh").kv("domain", domain);
  compile(domain);
  return true;
}

bool PolicyTable::purge(const std::string& domain) {
  auto it = entries_.find(domain);
  if (it == entries_.end()) return false;
  const bool published = it->second.policy != nullptr;
  if (it->second.compiling) --compiling_;
  entries_.erase(it);
  log::info("policy.purged").kv("domain", domain);
  if (published) publish({}, {domain});
  return true;
}

size_t PolicyTable::set_config(const config::v1::Config& config) {
  config_ = config;
  size_t n = 0;
  for (const std::string& d : domains()) {
    if (entries_[d].compiling) continue;
    compile(d);
    ++n;
  }
  return n;
}

std::vector<std::string> PolicyTable::domains() const {
  std::vector<std::string> out;
  for (const auto& [d, e] : entries_) out.push_back(d);
  std::sort(out.begin(), out.end());
  return out;
}

void PolicyTable::publish(std::vector<std::shared_ptr<const policy::DestinationPolicy>> upserts, std::vector<std::string> removed) {
  pb::Delta delta;
  delta.set_base_version(version_);
  delta.set_version(++version_);
  for (const auto& p : upserts) policy::to_proto(*p, delta.add_upserts());
  for (auto& r : removed) delta.add_removed(std::move(r));
  ++counters_.deltas;
  if (listener_) listener_(delta);
}

pb::Snapshot PolicyTable::snapshot() const {
  pb::Snapshot s;
  s.set_version(version_);
  s.set_generated_at(now_());
  for (const auto& [domain, e] : entries_)
    if (e.policy) policy::to_proto(*e.policy, s.add_policies());
  return s;
}

}  // namespace mxedge::push
