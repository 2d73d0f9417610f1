// TLS-RPT (RFC 8460) reports received by mail: finding the report in a message another MTA sent to
// the organisation's reporting mailbox (the rua mailto: target, §5.3), decoding and parsing it. Pure
// functions, no I/O: the data plane runs them on a received message (dataplane/worker, stored by
// dataplane/trace/tlsrpt_inbound) and they are fuzzed (tests/fuzz/fuzz_tlsrpt_mail.cc).
//
// Everything here reads hostile input: work is linear in the message size, nesting is bounded (a
// multipart inside the top-level multipart, no deeper), the decompressed report is bounded, and every
// string handed back is valid UTF-8 without control characters (it ends up in SQLite, protobuf
// strings and an operator's terminal).
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "controlplane/tlsrpt/report.h"

namespace mxedge::tlsrpt {

struct ExtractOptions {
  // Bound on the report JSON: the gunzip output, or a json part's decoded size.
  size_t max_json = 16 << 20;
};

struct ReceivedReport {
  std::optional<Report> report;  // set when a report was found and parsed
  std::string error;             // why not (empty when report is set)
  // Header fields of the message (unfolded, trimmed, cleaned; not RFC 2047-decoded); "" when absent.
  std::string from;
  std::string subject;
  std::string message_id;
  std::string report_domain;     // TLS-Report-Domain
  std::string report_submitter;  // TLS-Report-Submitter
  std::string content_type;      // the report part's media type, "" when none was found
};

// The report in an RFC 5322 message (CRLF line endings as spooled; bare LF tolerated): the first part
// whose Content-Type is application/tlsrpt+gzip or application/tlsrpt+json, in a multipart message
// (any multipart/* subtype, multipart/report; report-type="tlsrpt" in practice) or in a multipart
// nested in it; or the message itself when its top-level type is one of those. Transfer encodings:
// base64 (line breaks and spaces ignored, anything else outside the alphabet rejected), quoted-
// printable, 7bit/8bit/binary. Content that starts with the gzip magic is inflated whatever the
// declared type (some senders label gzip as json); a +gzip part that is not gzip is an error.
// Errors: "no application/tlsrpt part (top-level type ...)", "attachment is not valid base64 (...)",
// "gzip: ...", "report JSON exceeds N bytes", or parse_json's "<member path>: ..." message.
ReceivedReport extract_report(std::string_view message, const ExtractOptions& options = {});

// The pieces, for tests and the fuzzer.

// RFC 2045 Content-Type: type/subtype lower-cased, parameter names lower-cased, values unquoted
// (quoted-pair escapes resolved) and otherwise as written. nullopt when there is no type/subtype.
struct ContentType {
  std::string type;  // "multipart/report"
  std::map<std::string, std::string> params;
};
std::optional<ContentType> parse_content_type(std::string_view value);

// RFC 4648 base64; whitespace (SP, HT, CR, LF) ignored; missing final padding accepted; any other
// character, misplaced '=', data after the padding or a dangling single character rejected.
std::optional<std::string> base64_decode(std::string_view text, std::string* error);

// Valid UTF-8 with control characters replaced by a space (invalid octets by U+FFFD), at most
// max_bytes long (cut at a character boundary).
std::string clean_text(std::string_view s, size_t max_bytes = 998);

}  // namespace mxedge::tlsrpt
