#include "controlplane/push/policy_table.h"

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
  ++compiling_;
  const config::v1::Connector& connector = config::select_connector(config_, domain);
  const bool want_sts = sts_cache_ != nullptr && connector.mta_sts_mode() != config::v1::CONNECTOR_MODE_NONE;
  struct Join {
    std::shared_ptr<const resolver::DestinationResult> dest;
    std::optional<mta_sts::StsResult> sts;
    bool want_sts = false;
  };
  auto join = std::make_shared<Join>();
  join->want_sts = want_sts;
  auto done = [this, domain, join] {
    if (!join->dest || (join->want_sts && !join->sts)) return;
    int64_t sts_expires = 0;
    if (join->sts && join->sts->kind == mta_sts::StsResult::kPolicy) {
      auto cached = sts_cache_->cached(domain);
      sts_expires = cached ? cached->expires_at : now_() + join->sts->policy.max_age;
    }
    finish(domain, join->dest, join->sts ? &*join->sts : nullptr, sts_expires);
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

void PolicyTable::finish(const std::string& domain, std::shared_ptr<const resolver::DestinationResult> dest,
                         const mta_sts::StsResult* sts, int64_t sts_expires) {
  auto it = entries_.find(domain);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  e.compiling = false;
  --compiling_;
  ++counters_.compilations;
  const int64_t now = now_();
  const config::v1::Connector& connector = config::select_connector(config_, domain);
  auto p = std::make_shared<policy::DestinationPolicy>(
      policy_compiler::compile(connector, domain, *dest, policy_compiler::StsInput{sts, sts_expires}, now));
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
