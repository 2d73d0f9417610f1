// Fuzz target: a policy push as the data plane receives it from the control plane socket
// (mxedge.policy.v1.ToDataplane), decoded and applied to a memory-only policy store twice (a
// snapshot or delta, then the same bytes again), checking the store's invariants.
#include <cstdint>
#include <string>

#include "dataplane/policy/policy_store.h"
#include "policy/policy_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace pb = mxedge::policy::v1;
  pb::ToDataplane m;
  if (!m.ParseFromArray(data, static_cast<int>(size))) return 0;
  mxedge::dataplane::PolicyStore store("");
  for (int round = 0; round < 2; ++round) {
    const uint64_t before = store.version();
    auto answer = store.apply(m);
    if (answer.has_ack() == answer.has_nack()) __builtin_trap();  // exactly one answer
    if (answer.has_nack() && (answer.nack().error().empty() || store.version() != before)) __builtin_trap();
    auto snap = store.current();
    for (const auto& [domain, p] : snap->policies) {
      if (domain != p->domain) __builtin_trap();
      if (p->verdict == mxedge::policy::PolicyVerdict::kDeliver && p->hosts.empty()) __builtin_trap();
      for (const auto& h : p->hosts)
        if (h.tls == mxedge::policy::TlsRequirement::kDane && (h.tlsa.empty() || h.dane_names.empty())) __builtin_trap();
      // What was accepted encodes and decodes to the same thing.
      pb::DestinationPolicy again;
      mxedge::policy::to_proto(*p, &again);
      std::string error;
      if (!mxedge::policy::from_proto(again, &error)) __builtin_trap();
    }
  }
  return 0;
}
