// The connectivity analyzer's verdict: what outbound delivery would do under one compiled delivery
// policy (controlplane/policy_compiler) given what the live probes of the MX hosts found. Pure: no
// I/O, so the rules are unit-tested (tests/unit/controlplane/analyzer_verdict_test.cc).
//
// It walks the policy's hosts and addresses in order, as dataplane/delivery/outbound.cc does, and a
// host/address is usable when its probe shows what the host's requirement needs:
//   may      STARTTLS offered and the handshake completed (any certificate), or no STARTTLS and
//            cleartext allowed; a failed handshake is a failed attempt (no cleartext retry)
//   encrypt  a completed TLS handshake, any certificate
//   dane     the chain matched the host's usable TLSA records (probe.dane == "verified")
//   webpki   the chain verified to the trust anchors and named the MX host (probe.webpki == "verified")
// and the negotiated version is at least the host's min_tls_version.
//
// STANDARDS: RFC 7672 (DANE), RFC 8461 (MTA-STS), RFC 3207 (STARTTLS), RFC 8460 (result types).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "mxedge/mgmt/v1/check.pb.h"
#include "policy/delivery_policy.h"

namespace mxedge::analyzer {

// The probe of (host, address), or null when that address was not probed.
using ProbeLookup = std::function<const mgmt::v1::Probe*(std::string_view host, std::string_view address)>;

// The verdict for `policy`. With `probed` false only the compiled policy's verdict is reported
// (outcome = policy verdict, first host and its requirement for deliver).
mgmt::v1::ModeVerdict judge(const policy::DestinationPolicy& policy, const ProbeLookup& probes, bool probed);

// 0x0303 for "TLSv1.2", 0x0304 for "TLSv1.3", 0x0301/0x0302 for 1.0/1.1, 0 when unknown.
uint16_t tls_version_number(std::string_view name);

}  // namespace mxedge::analyzer
