// `mxedgectl sts parse | match | txt`: MTA-STS (RFC 8461) material checked with the same strict
// parsers the control plane uses (policy/mta_sts.h).
#pragma once

#include <string>
#include <vector>

#include "controlplane/ctl/offline/report.h"

namespace mxedge::ctl::offline {

// `sts parse FILE`. kOk when valid, kNegative when invalid, kUsage when the file cannot be read.
// JSON: {"file", "valid": true, "policy": {"version": "STSv1", "mode", "max_age", "mx": [...],
//        "extensions"}}
//    or {"file", "valid": false, "error": {"line": N (0: not tied to a line), "message"}}
// Text: "FILE: valid" and the policy, or "invalid: line N: <reason>".
Report run_sts_parse(const std::string& path);
Report check_sts_policy_text(const std::string& body, const std::string& what);

// `sts match PATTERN HOST`: kOk on a match, kNegative otherwise (also for an invalid pattern or host,
// with the reason). JSON: {"pattern", "host", "match": bool, "reason": "..."} ("reason" only when
// the pattern or host is invalid, or a wildcard does not cover the host's extra labels).
Report run_sts_match(const std::string& pattern, const std::string& host);

// `sts txt RECORD...`: the TXT records at _mta-sts.<domain> (each with its strings joined).
// kOk when they yield a policy id. JSON: {"valid": bool, "id": "..." | null, "error": "..." (invalid)}.
Report run_sts_txt(const std::vector<std::string>& records);

}  // namespace mxedge::ctl::offline
