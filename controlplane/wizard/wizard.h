// The DNSSEC enablement wizard (issue #7; `mxedgectl dns wizard <domain>`, `mxedge-resolve --wizard`):
// checks, with DNSSEC validated in-process, what a domain must publish before its MX moves to this
// gateway — the zone signed with a DS at the parent, the MX, TLSA at _25._tcp.<mx> matching the
// gateway's certificates (and the next key), MTA-STS (TXT and policy) and TLS-RPT — and says exactly
// which records to publish or fix, in the order of a safe cutover.
//
// STANDARDS: RFC 4033-4035 (DNSSEC), RFC 4509 (SHA-256 DS), RFC 6698 and RFC 7672 (SMTP DANE),
// RFC 8461 (MTA-STS), RFC 8460 (TLS-RPT), RFC 7505 (null MX).
//
// Threading: run_wizard() is synchronous and self-contained: it creates its own Resolver and policy
// fetcher on a private event base, dispatches it until every answer is in or its deadline passes,
// and touches no global state, so it may run on any thread (the control plane's management API
// runs it on a worker thread).
#pragma once

#include <string>

#include "mxedge/config/v1/config.pb.h"
#include "mxedge/mgmt/v1/wizard.pb.h"

namespace mxedge::wizard {

// `cfg` gives the resolver (resolver:), the MTA-STS fetch settings (mta_sts:, CA file falling back to
// outbound.ca_file), the gateway's certificates (inbound listeners' certificates) and its hostname
// (the MX name when the request names none). A request the wizard cannot run (bad domain, unreadable
// trust anchor) gives a report with `error` set and no steps.
mgmt::v1::WizardReport run_wizard(const config::v1::Config& cfg, const mgmt::v1::WizardRequest& request);

// The report as an operator reads it: each step with its status, findings and the records to
// publish, then the cutover plan.
std::string render_wizard_text(const mgmt::v1::WizardReport& report);

}  // namespace mxedge::wizard
