// The control plane's table of compiled destination policies, the source of what it pushes to the
// data plane. A destination enters when the data plane asks for it (PolicyRequest); it is compiled
// (controlplane/policy_compiler: connector × DNS × MTA-STS) asynchronously on the resolver's event
// base, recompiled when it expires while still in use, and withdrawn once the data plane has not
// asked for (or reported using) it for `policy_idle`. Every change bumps the table's version and goes
// out as one Delta through the listener; snapshot() is the whole table at its version.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "controlplane/mta_sts/policy_cache.h"
#include "controlplane/resolver/destination.h"
#include "mxedge/config/v1/config.pb.h"
#include "mxedge/policy/v1/policy.pb.h"
#include "policy/delivery_policy.h"

namespace mxedge::push {

struct TableCounters {
  uint64_t requests = 0, compilations = 0, withdrawals = 0, deltas = 0;
};

class PolicyTable {
 public:
  using Listener = std::function<void(const mxedge::policy::v1::Delta& delta)>;

  // `sts_cache` may be null (no MTA-STS: every connector is treated as mode none). `now`: unix seconds.
  PolicyTable(const config::v1::Config& config, resolver::DestinationResolver& destinations,
              mta_sts::PolicyCache* sts_cache, std::function<int64_t()> now);

  void set_listener(Listener listener) { listener_ = std::move(listener); }

  // The data plane needs `domain` (or reports using it): compile it unless a fresh policy exists or
  // a compilation is under way; either way it counts as in use.
  void request(const std::string& domain);

  // Once a second: recompile expired policies still in use, withdraw idle ones.
  void tick();

  // The management API. refresh: compile `domain` now with fresh lookups (it enters the table when
  // absent); false when a compilation is already under way. purge: drop it (withdrawn from the data
  // planes); false when absent. set_config: new connectors / outbound settings; every policy is
  // recompiled under them; returns how many compilations started.
  bool refresh(const std::string& domain);
  bool purge(const std::string& domain);
  size_t set_config(const config::v1::Config& config);
  const config::v1::Config& config() const { return config_; }
  std::vector<std::string> domains() const;

  mxedge::policy::v1::Snapshot snapshot() const;
  uint64_t version() const { return version_; }
  size_t size() const { return entries_.size(); }
  size_t compiling() const { return compiling_; }
  const TableCounters& counters() const { return counters_; }
  // The current policy for `domain`, or null.
  std::shared_ptr<const policy::DestinationPolicy> find(const std::string& domain) const;

 private:
  struct Entry {
    std::shared_ptr<const policy::DestinationPolicy> policy;  // null until the first compilation
    int64_t used_at = 0;
    bool compiling = false;
    uint64_t generation = 0;  // of the compilation under way; a purged entry's late result is dropped
  };
  void compile(const std::string& domain);
  void finish(const std::string& domain, uint64_t generation, std::shared_ptr<const resolver::DestinationResult> dest,
              const mta_sts::StsResult* sts, int64_t sts_expires, uint16_t smart_host_port);
  void compile_smart_host(const std::string& domain, uint64_t generation, const config::v1::Connector& connector);

 public:
  static bool parse_smart_host(const std::string& text, std::string* host, uint16_t* port);

 private:
  void publish(std::vector<std::shared_ptr<const policy::DestinationPolicy>> upserts, std::vector<std::string> removed);

  config::v1::Config config_;
  resolver::DestinationResolver& destinations_;
  mta_sts::PolicyCache* sts_cache_;
  std::function<int64_t()> now_;
  Listener listener_;
  std::unordered_map<std::string, Entry> entries_;
  uint64_t version_ = 0;
  uint64_t generations_ = 0;
  size_t compiling_ = 0;
  TableCounters counters_;
};

}  // namespace mxedge::push
