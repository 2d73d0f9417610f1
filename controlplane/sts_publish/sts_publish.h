// The gateway's own MTA-STS policy (RFC 8461) for its accepted domains, from the `mta_sts_publish:`
// section of the configuration: the policy text, its id and the `_mta-sts` TXT record to publish, and
// the Host check of the HTTPS server that serves it (sts_server.h). Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxedge/config/v1/config.pb.h"
#include "policy/mta_sts.h"

namespace mxedge::sts_publish {

// RFC 8461 §3.2: "version: STSv1", "mode: ...", one "mx: ..." per name, "max_age: ...", each line
// ending in CRLF.
std::string policy_text(policy::StsMode mode, const std::vector<std::string>& mx, uint32_t max_age);
// The policy of `config.mta_sts_publish()` (defaults applied: mode, max_age, mx).
std::string policy_text(const config::v1::Config& config);
policy::StsMode publish_mode(config::v1::StsPublishMode mode);

// The id of a policy text: the first 20 hex digits of its SHA-256, so the same policy always gets the
// same id and a changed one a new id (RFC 8461 §3.1: 1-32 letters and digits).
std::string policy_id(std::string_view text);

// The TXT record's value, "v=STSv1; id=<id>;".
std::string txt_value(std::string_view id);
// The record in zone-file form: `_mta-sts.<domain>. IN TXT "v=STSv1; id=<id>;"`.
std::string txt_record(std::string_view domain, std::string_view id);

// The accepted domain a request's Host header names: "mta-sts.<domain>" with any ":port" and a
// trailing dot removed, case-insensitive; nullopt when it names none of `domains` (lower case).
std::optional<std::string> served_domain(std::string_view host_header, const std::vector<std::string>& domains);

}  // namespace mxedge::sts_publish
