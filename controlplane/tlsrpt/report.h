// TLS-RPT (RFC 8460) aggregate reports: the report model of §4.4, its JSON form, gzip, the report
// file name (§5.1) and the report mail (§5.3), and the parser for reports other MTAs send us. Pure
// functions, no I/O: outcome recording, daily scheduling and sending (issue #8) are built on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mxedge::tlsrpt {

// §4.3's result types. Inbound reports may carry types registered after RFC 8460: FailureDetail keeps
// the result type as a string, these are the ones we know and produce.
enum class ResultType {
  kStarttlsNotSupported,     // "starttls-not-supported"
  kCertificateHostMismatch,  // "certificate-host-mismatch"
  kCertificateExpired,       // "certificate-expired"
  kCertificateNotTrusted,    // "certificate-not-trusted"
  kValidationFailure,        // "validation-failure"
  kTlsaInvalid,              // "tlsa-invalid"
  kDnssecInvalid,            // "dnssec-invalid"
  kDaneRequired,             // "dane-required"
  kStsPolicyFetchError,      // "sts-policy-fetch-error"
  kStsPolicyInvalid,         // "sts-policy-invalid"
  kStsWebpkiInvalid,         // "sts-webpki-invalid"
};
std::string_view to_string(ResultType type);
std::optional<ResultType> parse_result_type(std::string_view text);

// §4.4 "policy-type".
enum class PolicyType { kSts, kTlsa, kNoPolicyFound };
std::string_view to_string(PolicyType type);  // "sts", "tlsa", "no-policy-found"
std::optional<PolicyType> parse_policy_type(std::string_view text);

struct DateRange {
  std::string start_datetime;  // RFC 3339, "2016-04-01T00:00:00Z"
  std::string end_datetime;
  bool operator==(const DateRange&) const = default;
};

struct Policy {
  PolicyType policy_type = PolicyType::kNoPolicyFound;
  std::vector<std::string> policy_string;  // MTA-STS: the policy's lines; DANE: TLSA records
  std::string policy_domain;
  std::vector<std::string> mx_host;  // MTA-STS mx patterns
  bool operator==(const Policy&) const = default;
};

struct Summary {
  uint64_t total_successful_session_count = 0;
  uint64_t total_failure_session_count = 0;
  bool operator==(const Summary&) const = default;
};

// Empty strings are absent members: to_json omits them, parse_json leaves them empty.
struct FailureDetail {
  std::string result_type;  // to_string(ResultType), or a type unknown to us in an inbound report
  std::string sending_mta_ip;
  std::string receiving_mx_hostname;
  std::string receiving_mx_helo;  // optional
  std::string receiving_ip;
  uint64_t failed_session_count = 0;
  std::string additional_information;  // optional, a URI
  std::string failure_reason_code;     // optional
  bool operator==(const FailureDetail&) const = default;
};

struct PolicyReport {  // one element of "policies"
  Policy policy;
  Summary summary;
  std::vector<FailureDetail> failure_details;
  bool operator==(const PolicyReport&) const = default;
};

struct Report {
  std::string organization_name;
  DateRange date_range;
  std::string contact_info;
  std::string report_id;
  std::vector<PolicyReport> policies;
  bool operator==(const Report&) const = default;
};

// RFC 3339 date-time <-> Unix seconds. parse accepts "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)"
// ('t'/'z' and a space for 'T' too; the fraction is dropped; a leap second counts as :59); format
// always gives "YYYY-MM-DDTHH:MM:SSZ".
std::optional<int64_t> parse_datetime(std::string_view text);
std::string format_datetime(int64_t unix_seconds);

// The §4.4 JSON, members in the RFC's order with its hyphenated names; empty optional members
// (receiving-mx-helo, additional-information, failure-reason-code, the address and host fields, an
// empty mx-host; policy-string of a no-policy-found policy) are left out. Invalid UTF-8 in a string
// (a hostile peer's HELO name) is replaced by U+FFFD. indent < 0: compact.
std::string to_json(const Report& report, int indent = -1);

// Parses a report another MTA sent. Required: organization-name, date-range (start-datetime,
// end-datetime: RFC 3339, start <= end), contact-info, report-id, policies (an array); per policy:
// policy.policy-type (sts, tlsa, no-policy-found), policy.policy-domain, summary with both counts;
// per failure detail: result-type and failed-session-count. Optional members must have the right type
// when present (policy-string and mx-host arrays of strings, failure-details an array of objects, the
// rest strings). Counts are non-negative integers. Unknown members are ignored; unknown result types
// are kept. nullopt with `error` naming the member path when the report is rejected, e.g.
// "policies[0].summary.total-failure-session-count: not a non-negative integer". Never throws.
std::optional<Report> parse_json(std::string_view json, std::string* error);

// gzip (RFC 1952) at the default level. gunzip accepts gzip only (not zlib or raw deflate), also
// concatenated members, and fails when the output would exceed `max_out` bytes (decompression bombs),
// on truncated or corrupt input and on trailing bytes that are not another member.
std::string gzip(std::string_view data);
std::optional<std::string> gunzip(std::string_view data, size_t max_out, std::string* error);

// §5.1: "sender!policy-domain!begin-timestamp!end-timestamp[!unique-id].json.gz", the timestamps in
// Unix seconds. Characters of unique_id other than letters and digits are dropped (the ABNF's
// 1*(ALPHA / DIGIT)); an empty one is left out. Domains are lower-cased, a trailing dot removed.
std::string report_filename(std::string_view submitter, std::string_view policy_domain, int64_t begin_unix,
                            int64_t end_unix, std::string_view unique_id = {});

// RFC 4648 base64 in lines of `line_length` characters (0: one line) separated by CRLF.
std::string base64_encode(std::string_view data, size_t line_length = 76);

struct MailOptions {
  std::string from;               // the report's sender address, e.g. "tlsrpt-noreply@mx.example.com"
  std::string to;                 // the rua mailto: address
  std::string submitter;          // the sending MTA's domain: Subject, TLS-Report-Submitter, file name
  std::string message_id_domain;  // right-hand side of the Message-ID
  int64_t date = 0;               // Date header, Unix seconds
  std::string unique_id;          // the file name's optional unique-id (letters and digits kept)
};

// The report as an RFC 5322 message for a mailto: rua (§5.3), CRLF line endings: From, To, Date,
// Message-ID, Subject "Report Domain: <policy-domain> Submitter: <submitter> Report-ID: <<id>>" (the
// report-id as given when it has an '@', else "<report-id>@<submitter>", so it is a msg-id as the
// ABNF wants), TLS-Report-Domain, TLS-Report-Submitter, MIME-Version, Content-Type multipart/report;
// report-type="tlsrpt"; then a text/plain part and the application/tlsrpt+gzip part (base64 in 76-char
// lines, Content-Disposition attachment with the §5.1 file name from the report's date range). Headers
// are folded at 78 characters where they have spaces to fold at. The policy domain is that of the
// first policy (a report covers one policy domain, §4).
std::string mail_message(const Report& report, const MailOptions& options);

// For an https: rua (§5.4): POST gzip(to_json(report)) with this Content-Type.
std::string https_content_type();
std::string https_body(const Report& report);

}  // namespace mxedge::tlsrpt
