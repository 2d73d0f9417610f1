// The data plane's per-destination policies: an immutable snapshot (domain → DestinationPolicy)
// swapped atomically, so workers read it without locks and never wait for the control plane.
//
// The control plane pushes a full Snapshot on connect and Deltas after (policy/proto/mxedge/policy/v1);
// apply() validates a push as a whole (policy_codec), writes the resulting state to the state file
// (temp file, fsync, rename, fsync of the directory) and only then publishes it; the answer is an
// Ack, or a Nack with the reason (need_snapshot when a Delta does not apply to the version held).
// At start, load() restores the last state, so a restarted data plane keeps delivering on unexpired
// policies while the control plane is away; find() never returns an expired policy (the caller asks
// the control plane and parks the message meanwhile — never a downgrade).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mxedge/policy/v1/policy.pb.h"
#include "policy/delivery_policy.h"

namespace mxedge::dataplane {

struct PolicySnapshot {
  uint64_t version = 0;
  int64_t generated_at = 0;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::shared_ptr<const policy::DestinationPolicy>, Hash, std::equal_to<>> policies;

  // The policy for `domain` (lower case, no trailing dot) unless absent or expired at `now`.
  std::shared_ptr<const policy::DestinationPolicy> find(std::string_view domain, int64_t now) const;
};

struct PolicyStoreCounters {
  uint64_t snapshots = 0, deltas = 0, nacks = 0, persist_failures = 0;
};

class PolicyStore {
 public:
  // `state_file`: where the last state is kept across restarts; empty: memory only (tests).
  explicit PolicyStore(std::string state_file);

  // Restores the state file. True when there was none (empty store) or it was read; false with
  // `error` when it exists but cannot be used (unreadable, torn, corrupt): the store stays empty.
  bool load(std::string* error);

  // Applies one push; returns the answer for the control plane (Ack or Nack).
  mxedge::policy::v1::ToControlplane apply(const mxedge::policy::v1::ToDataplane& message);

  // The current snapshot (never null). Any thread.
  std::shared_ptr<const PolicySnapshot> current() const { return current_.load(std::memory_order_acquire); }
  uint64_t version() const { return current()->version; }
  const PolicyStoreCounters& counters() const { return counters_; }

 private:
  bool persist(const PolicySnapshot& s, std::string* error);
  mxedge::policy::v1::ToControlplane nack(uint64_t version, uint64_t nonce, std::string error, bool need_snapshot);

  std::string state_file_;
  std::atomic<std::shared_ptr<const PolicySnapshot>> current_;
  PolicyStoreCounters counters_;
};

}  // namespace mxedge::dataplane
