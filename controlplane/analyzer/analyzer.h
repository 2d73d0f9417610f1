// The connectivity analyzer behind `mxedgectl check <domain>` and `mxedge-resolve --check` (issue
// #7), in the spirit of Microsoft's Remote Connectivity Analyzer and Postfix's posttls-finger:
//
//   1. DNS: the destination resolved as outbound delivery resolves it (DestinationResolver: MX with
//      its DNSSEC status, per host the addresses and TLSA with their status and usability);
//   2. MTA-STS: the _mta-sts TXT record and a fresh policy fetch (no persistent cache);
//   3. probes: every address of every MX host (unless no_probe): connect, greeting, EHLO, STARTTLS,
//      TLS version and cipher, the peer chain, DANE match, WebPKI/MTA-STS match, QUIT (probe.h);
//   4. verdicts: the policy compiler's policy for each DANE mode x MTA-STS mode (none /
//      opportunistic / mandatory), and for the connector the configuration selects for the domain,
//      judged against the probes (verdict.h): deliver (host, authentication), defer or bounce (why).
//
// run_check is synchronous and self-contained: its own Resolver (and libevent base), fetcher and TLS
// context, nothing shared with the caller, so the control plane may run it on a thread of its own.
// The resolution phase has an overall deadline; every probe has connect and I/O timeouts.
#pragma once

#include <chrono>
#include <string>

#include "controlplane/analyzer/probe.h"
#include "controlplane/mta_sts/policy_fetcher.h"
#include "controlplane/resolver/destination.h"
#include "controlplane/resolver/resolver.h"
#include "mxedge/config/v1/config.pb.h"
#include "mxedge/mgmt/v1/check.pb.h"

namespace mxedge::analyzer {

// Everything run_check needs besides the connectors; check_settings() derives it from the config.
struct CheckSettings {
  resolver::ResolverOptions resolver;
  resolver::DestinationOptions destination;
  mta_sts::FetchOptions fetch;
  std::string webpki_ca_file;                         // outbound.ca_file; empty: the system store
  ProbeOptions probe;                                 // EHLO name: config hostname (else the machine's host name)
  std::chrono::milliseconds resolve_deadline{60000};  // DNS and MTA-STS together
};

// `cfg` as loaded by config::load_config_file (defaults applied); an empty Config gives the built-in
// defaults. Probe timeouts are the outbound ones capped at 10 s (connect) and 30 s (commands).
CheckSettings check_settings(const config::v1::Config& cfg);

mgmt::v1::CheckReport run_check(const config::v1::Config& cfg, const mgmt::v1::CheckRequest& request);
mgmt::v1::CheckReport run_check(const config::v1::Config& cfg, const mgmt::v1::CheckRequest& request,
                                const CheckSettings& settings);

// True when the configured connector's verdict is deliver (mxedge-resolve --check's exit status).
bool would_deliver(const mgmt::v1::CheckReport& report);

// The human-readable report: the steps in order with ok / info / warn / FAIL, then the verdicts.
std::string render_check_text(const mgmt::v1::CheckReport& report);

}  // namespace mxedge::analyzer
