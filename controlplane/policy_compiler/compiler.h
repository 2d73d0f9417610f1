// Policy compilation: a connector's modes × the destination's DNSSEC-validated DNS results (MX,
// addresses, TLSA: controlplane/resolver) × its MTA-STS result (controlplane/mta_sts) → one
// policy::DestinationPolicy, the record the data plane delivers by.
//
// The rules (RFC 7672, RFC 8461, and the connector modes of Exchange Online's outbound connectors):
// - Null MX and NXDOMAIN bounce; a bogus or failed MX lookup defers (never "no MX").
// - DANE none: TLSA is not used. Opportunistic: a host with a secure usable TLSA set requires DANE
//   authentication; secure but only unusable records require TLS without authentication; insecure
//   or securely denied TLSA leaves the host to MTA-STS or opportunistic TLS; a bogus or failed
//   address or TLSA lookup takes the host out (others may still be used; none left: defer).
//   Mandatory: the MX answer must be secure and only hosts with a usable TLSA set are used; otherwise
//   defer (result dane-required).
// - MTA-STS none: ignored. Opportunistic: an enforce policy keeps only matching MX hosts and requires
//   a WebPKI-valid certificate for the MX host name; a testing policy verifies the same way but only
//   reports; no policy, or a failed fetch without a cached policy, means no MTA-STS (RFC 8461 §5).
//   Mandatory: the domain must have an enforce policy, and every host used must match it.
// - Where a host has a secure usable TLSA set, DANE decides (RFC 8461 §2): an MTA-STS enforce
//   policy neither replaces nor relaxes it (under opportunistic MTA-STS a DANE host is used even if
//   the policy does not list it; under mandatory it must be listed as well). A host whose TLSA set is
//   all unusable gets the stricter WebPKI check when an enforce policy lists it.
// - Otherwise opportunistic TLS; cleartext only when no policy applies and the connector allows it.
#pragma once

#include <cstdint>
#include <string_view>

#include "controlplane/mta_sts/sts_client.h"
#include "controlplane/resolver/destination.h"
#include "mxedge/config/v1/config.pb.h"
#include "policy/delivery_policy.h"

namespace mxedge::policy_compiler {

struct StsInput {
  const mta_sts::StsResult* result = nullptr;  // null: not looked up (MTA-STS mode none)
  int64_t expires_at = 0;                       // of a kPolicy result (the cached policy's expiry)
};

policy::ConnectorMode mode_of(config::v1::ConnectorMode m);

// `dest` must be the resolution of `domain` (or of the connector's smart host).
policy::DestinationPolicy compile(const config::v1::Connector& connector, std::string_view domain,
                                  const resolver::DestinationResult& dest, const StsInput& sts, int64_t now);

}  // namespace mxedge::policy_compiler
