// SMTP command-line parsing for the inbound server: verbs, MAIL/RCPT paths and ESMTP parameters.
//
// STANDARDS: RFC 5321 (4.1.1, 4.1.2 grammar, 4.5.3.1 sizes), RFC 1870 SIZE, RFC 6152 8BITMIME,
// RFC 6531 SMTPUTF8, RFC 3461 DSN parameters (NOTIFY, ORCPT, RET, ENVID; xtext), RFC 8689 REQUIRETLS.
// SECURITY: every input byte comes from an untrusted peer. Parsers take a string_view of one line
// (without CRLF), never read past it, and reject rather than repair: an address that is not exactly
// RFC 5321 syntax is refused, so what the next hop sees is what we checked.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mxedge::smtp {

enum class Verb { kEhlo, kHelo, kMail, kRcpt, kData, kBdat, kRset, kNoop, kQuit, kHelp, kStarttls, kVrfy, kExpn, kUnknown };

struct Command {
  Verb verb = Verb::kUnknown;
  std::string_view args;  // everything after the verb and its separating space(s)
};

Command parse_command(std::string_view line);

// A parsed RFC 5321 Path (reverse-path or forward-path).
struct Mailbox {
  bool null_path = false;       // "<>"
  bool postmaster = false;      // "<Postmaster>" with no domain (RFC 5321 4.5.1)
  std::string local_part;       // as written (quoted form kept)
  std::string domain;           // as written; address literals keep their brackets
  bool quoted_local = false;
  bool address_literal = false;
  bool source_route = false;    // "<@a,@b:user@c>"
  bool non_ascii = false;       // UTF-8 anywhere (needs SMTPUTF8)

  std::string address() const;  // "local@domain", "" for <>
};

enum class ParamError { kNone, kSyntax, kUnsupported, kDuplicate };

enum class BodyParam { kUnspecified, k7Bit, k8BitMime, kBinaryMime };
enum class RetParam { kUnspecified, kFull, kHdrs };

struct MailFromArgs {
  Mailbox sender;
  std::optional<uint64_t> size;
  BodyParam body = BodyParam::kUnspecified;
  bool smtputf8 = false;
  RetParam ret = RetParam::kUnspecified;
  std::string envid;  // xtext as received
  bool requiretls = false;  // RFC 8689 REQUIRETLS (no value)
};

// NOTIFY bits, as stored in the spool envelope.
constexpr uint32_t kNotifySuccess = 1;
constexpr uint32_t kNotifyFailure = 2;
constexpr uint32_t kNotifyDelay = 4;
constexpr uint32_t kNotifyNever = 8;

struct RcptToArgs {
  Mailbox recipient;
  uint32_t notify = 0;
  std::string orcpt;  // "addr-type;xtext" as received
};

enum class PathError { kNone, kSyntax, kTooLong };

struct MailParseResult {
  PathError path_error = PathError::kNone;
  ParamError param_error = ParamError::kNone;
  std::string bad_param;  // the offending parameter for 555 replies
  MailFromArgs args;
};

struct RcptParseResult {
  PathError path_error = PathError::kNone;
  ParamError param_error = ParamError::kNone;
  std::string bad_param;
  RcptToArgs args;
};

// args: the text after "MAIL" ("FROM:<a@b> SIZE=10"). Accepts optional spaces after the colon, as
// widespread clients send them; everything else is strict.
MailParseResult parse_mail_from(std::string_view args);
RcptParseResult parse_rcpt_to(std::string_view args);

// Parses "<...>" at the start of text into a Mailbox; returns the number of bytes consumed or 0.
size_t parse_path(std::string_view text, Mailbox& out, PathError& error);

bool is_xtext(std::string_view s);
// "250"-style BDAT arguments: size and LAST flag.
struct BdatArgs {
  uint64_t size = 0;
  bool last = false;
};
std::optional<BdatArgs> parse_bdat(std::string_view args);

bool iequals(std::string_view a, std::string_view b);

}  // namespace mxedge::smtp
