// The per-destination delivery policy: what an outbound connection to each MX host of a domain must
// satisfy, compiled by the control plane from a connector's modes, the DNSSEC-validated DNS results
// (MX, addresses, TLSA) and the domain's MTA-STS policy, and applied by the data plane's TLS client.
//
// This header is the model both planes share; controlplane/policy_compiler builds it, the data plane's
// delivery applies HostPolicy to each connection (dataplane/tls/client_verify.h).
//
// STANDARDS: RFC 7672 (SMTP DANE), RFC 8461 (MTA-STS; §2: where DANE applies it decides), RFC 8460
// (result types named in failures), RFC 3207 (STARTTLS), RFC 8689 (REQUIRETLS: which hosts qualify).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "policy/mta_sts.h"
#include "policy/tlsa.h"

namespace mxedge::policy {

// A connector's DANE or MTA-STS mode (the seeds' SmtpDaneMode / MtaStsMode, plus mandatory for STS).
enum class ConnectorMode : uint8_t { kNone, kOpportunistic, kMandatory };
std::string_view to_string(ConnectorMode m);

// What the TLS session to one MX host must be.
enum class TlsRequirement : uint8_t {
  kMay,      // opportunistic: STARTTLS when offered, certificate not verified; cleartext only when
             // STARTTLS is not offered and HostPolicy::cleartext_allowed
  kEncrypt,  // TLS required, certificate not verified (RFC 7672 §2.2: secure TLSA RRset, none usable)
  kDane,     // TLS required, peer authenticated by the host's usable TLSA records (RFC 7672 §3)
  kWebPki,   // TLS required, WebPKI chain and the MX host name (RFC 8461 §4.2, mode enforce)
};
std::string_view to_string(TlsRequirement r);

// One MX host delivery may use, in the order it should be tried.
struct HostPolicy {
  std::string name;        // MX host name: lower case, A-labels, no trailing dot
  uint16_t preference = 0;
  std::vector<std::string> addresses;  // IPv6 and IPv4 literals, as resolved
  uint16_t port = 25;                  // 25 for MX hosts; a smart host's configured port
  TlsRequirement tls = TlsRequirement::kMay;

  // kDane: the usable TLSA records and the names a DANE-TA chain may carry (RFC 7672 §3.2.2): the
  // TLSA base domain first (the CNAME-expanded host name when its TLSA records were used), then the
  // MX host name. SNI is the first of them. DANE-EE matches ignore names (RFC 7672 §3.1.1).
  std::vector<TlsaRecord> tlsa;
  std::vector<std::string> dane_names;

  // kMay / kEncrypt under an MTA-STS policy in mode testing: verify as kWebPki would, record the
  // failure for TLS-RPT, deliver anyway (RFC 8461 §5).
  bool sts_testing = false;
  // kMay: a peer that does not offer STARTTLS may receive the message in cleartext.
  bool cleartext_allowed = false;

  // Minimum TLS version (0x0303 TLS 1.2, 0x0304 TLS 1.3) for any TLS session with this host.
  uint16_t min_tls_version = 0x0303;

  // Human-readable reason for the requirement (trace, logs): "DANE: secure usable TLSA at _25._tcp.mx.x".
  std::string reason;
};

enum class PolicyVerdict : uint8_t {
  kDeliver,  // try `hosts` in order
  kDefer,    // nothing may be tried now: keep the message queued and retry (reason says why)
  kBounce,   // the destination cannot receive mail (null MX, NXDOMAIN): fail the recipients now
};
std::string_view to_string(PolicyVerdict v);

// A host of the destination that delivery must not use, and why.
struct ExcludedHost {
  std::string name;
  std::string reason;
  std::string result_type;  // RFC 8460 result type when a policy excluded it ("dnssec-invalid", ...)
};

struct DestinationPolicy {
  std::string domain;     // the recipient domain (or the smart host's name for a smart-host route)
  std::string connector;  // the connector that matched
  ConnectorMode dane_mode = ConnectorMode::kOpportunistic;
  ConnectorMode sts_mode = ConnectorMode::kOpportunistic;

  PolicyVerdict verdict = PolicyVerdict::kDefer;
  std::string reason;       // kDefer / kBounce: what failed, for the trace and the DSN
  std::string result_type;  // RFC 8460 result type of a policy failure, empty otherwise
  std::string enhanced_status;  // kBounce / kDefer: the enhanced status code a DSN names ("5.1.10")

  // kDeliver: ascending preference; the data plane shuffles equal preferences per delivery
  // (RFC 5321 §5.1).
  std::vector<HostPolicy> hosts;
  std::vector<ExcludedHost> excluded;

  // What the DNS and MTA-STS said, for the trace and `mxedgectl policy show`.
  std::string dnssec;     // "secure" | "insecure" | "bogus" | "failure" (of the MX answer)
  std::string sts;        // "enforce" | "testing" | "none" | "no-policy" | "temporary-failure"
  std::string sts_id;     // the policy's TXT id when there is one
  std::vector<std::string> sts_mx;  // its mx patterns

  int64_t expires_at = 0;  // unix seconds: the policy must not be used after this
  uint64_t version = 0;    // bumped by the control plane on every change
};

// RFC 8689 4.2.1: why a REQUIRETLS message may not use host `h` of `p` before any connection is
// made, or "" when it may: the MX must come from a DNSSEC-secure answer or be covered by the
// destination's MTA-STS policy (enforce or testing), and the host's requirement must verify the
// certificate (DANE, WebPKI, or the WebPKI check an MTA-STS testing policy adds); "may"/"encrypt"
// hosts never authenticate their peer.
std::string requiretls_host_refusal(const DestinationPolicy& p, const HostPolicy& h);

// The hosts of `p` (indexes) a REQUIRETLS message may still try: those without a refusal above
// and not in `refused` (host name -> why a session with it did not satisfy REQUIRETLS). When none
// remains, *why lists every host's reason ("mx1: ...; mx2: ...").
std::vector<size_t> requiretls_candidates(const DestinationPolicy& p, const std::map<std::string, std::string>& refused,
                                          std::string* why);

}  // namespace mxedge::policy
