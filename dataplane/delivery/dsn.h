// Delivery status notifications (RFC 3464 in an RFC 6522 multipart/report, RFC 3461 semantics): the
// text of a failure or delay notice for some recipients of one spooled message, and their injection
// into the worker's spool as a new message from <> to the original sender (durable like any message,
// then relayed to the next hop or delivered outbound like any other).
//
// Rules: never a notice about a message from <> (no bounce of a bounce); a recipient with NOTIFY=NEVER
// gets none; with NOTIFY given, failures only with FAILURE and delays only with DELAY; without NOTIFY,
// failures are reported and delays are not. RET=HDRS, REQUIRETLS (RFC 8689 5) and bodies over 1 MiB return
// the header only;
// otherwise the whole message (RET=FULL is the default, as in Postfix). ENVID and ORCPT are returned.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/spool/spool.h"

namespace mxedge::delivery {

struct DsnRecipient {
  uint32_t index = 0;        // into the envelope's recipients
  std::string status;        // "5.7.5", "4.4.1"
  std::string remote_mta;    // "mx.example.com" when a server answered
  std::string diagnostic;    // "smtp; 550 5.1.1 no such user" or "x-mxedge; DANE: no TLSA record matched"
};

enum class DsnKind { kFailure, kDelay };

struct DsnText {
  std::string reporting_mta;      // our host name
  int64_t now_us = 0;             // for Date: and the boundary
  int64_t retry_until_us = 0;     // kDelay: Will-Retry-Until
  std::string message_id_domain;  // right side of the notice's Message-ID
};

// The domain of an address, lower case, without a trailing dot ("" without an @).
std::string domain_of(const std::string& address);

// The enhanced status code in a reply or reason ("550 5.1.1 ...", "4.7.5 no MX host ..."), or `fallback`.
std::string enhanced_status(std::string_view text, const std::string& fallback);

// Which of `candidates` get a notice of this kind (NOTIFY rules above); empty when the message came
// from <>.
std::vector<DsnRecipient> dsn_recipients(const mxedge::spool::v1::Envelope& env, DsnKind kind,
                                         std::vector<DsnRecipient> candidates);

// The notice in canonical CRLF form. `original` is the returned content (the whole message, or only
// its header when `headers_only`).
std::string build_dsn(const mxedge::spool::v1::Envelope& env, DsnKind kind, const std::vector<DsnRecipient>& rcpts,
                      const DsnText& text, const std::string& original, bool headers_only);

// Reads what a notice returns: the header for RET=HDRS or bodies over `full_limit`, the whole
// message otherwise. Sets *headers_only accordingly.
std::string returned_content(spool::Spool& spool, const spool::SpoolEntry& entry, uint64_t full_limit, bool* headers_only);

// Builds the notice and stages it in `spool` (committed with the worker's next group commit). It goes
// to the next hop when the sender's domain is in `accepted_domains`, otherwise out by MX, which
// needs `outbound_enabled` (without it the notice is not sent, and that is logged).
// Returns the new queue id, or "" when nobody is to be (or can be) notified.
std::string send_dsn(spool::Spool& spool, const spool::SpoolEntry& entry, DsnKind kind, std::vector<DsnRecipient> rcpts,
                     const std::string& hostname, const std::vector<std::string>& accepted_domains, bool outbound_enabled,
                     int64_t retry_until_us = 0);

}  // namespace mxedge::delivery
