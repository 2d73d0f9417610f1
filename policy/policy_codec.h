// Conversion of the delivery policy model (policy/delivery_policy.h) to and from its wire form
// (mxedge.policy.v1.DestinationPolicy). Decoding validates everything the data plane relies on, so a
// bad push is refused as a whole (NACK) instead of half-applied.
#pragma once

#include <optional>
#include <string>

#include "mxedge/policy/v1/policy.pb.h"
#include "policy/delivery_policy.h"

namespace mxedge::policy {

void to_proto(const DestinationPolicy& p, mxedge::policy::v1::DestinationPolicy* out);

// nullopt with `error` set ("hosts[1].tlsa[0]: usage 7 out of range") when the message is not a valid
// policy: empty or over-long names, unknown enums, a deliver verdict without hosts, a DANE host
// without TLSA records or names, an address that is not an IP literal, a TLS version other than 1.2
// or 1.3, no expiry.
std::optional<DestinationPolicy> from_proto(const mxedge::policy::v1::DestinationPolicy& m, std::string* error);

}  // namespace mxedge::policy
