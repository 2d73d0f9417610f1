// message_template.h - the test messages mxedge-loadgen sends.
//
// DESCRIPTION
//   A MessageTemplate builds, once per run, the body every message shares, and
//   renders each message's own header block (From, To, Subject, Date,
//   Message-ID) into a caller's buffer. Header fields have a fixed width, so
//   every message has exactly message_size() octets: the header block plus the
//   body is padded to the requested --message-size.
//
//   The body is kept in its transmitted form: lines of printable ASCII of at
//   most 78 characters, each ending in CRLF, dot-stuffed, followed by the
//   end-of-data line ".". Sessions send it straight from this one read-only
//   copy, so a thousand concurrent 1 MiB messages cost 1 MiB, not 1 GiB.
//
//   The first body line is a lone "." and about one line in 94 starts with a
//   dot, so every message exercises the server's dot-unstuffing.
//
// STANDARDS
//   RFC 5322 (message format, line length limit of 78 characters, Date and
//   Message-ID syntax). RFC 5321 section 4.5.2 (transparency: dot-stuffing) and
//   section 4.1.1.4 (end of data "CRLF.CRLF").
//
// SECURITY
//   Content comes from the command line (addresses, EHLO name) and counters.
//   The option parser rejects CR, LF and other control characters in those
//   values, so they cannot inject header lines or SMTP commands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace mxedge::loadgen {

struct MessageSpec {
  std::string from;
  std::string to;        // the To: header (the first recipient)
  std::string domain;    // right-hand side of Message-ID
  std::size_t size = 0;  // requested size of header block plus body
};

class MessageTemplate {
 public:
  explicit MessageTemplate(const MessageSpec& spec);

  // Appends the header block of one message, including the empty line that
  // ends it. date is a Date header value from rfc5322_date(); run_id, worker
  // and sequence make the Message-ID unique across runs, threads and messages.
  void append_headers(std::string& out, std::string_view date, std::uint64_t run_id, unsigned worker,
                      std::uint64_t sequence) const;

  // Dot-stuffed body followed by ".\r\n".
  [[nodiscard]] std::string_view wire_body() const { return wire_body_; }
  // Size of each message as stored by the server (header block plus body,
  // before stuffing, without the end-of-data line).
  [[nodiscard]] std::size_t message_size() const { return header_size_ + body_size_; }

 private:
  MessageSpec spec_;
  std::size_t header_size_ = 0;
  std::size_t body_size_ = 0;
  std::string wire_body_;
};

// "Mon, 02 Jan 2006 15:04:05 +0000": always 31 characters, in UTC.
std::string rfc5322_date(std::time_t when);

}  // namespace mxedge::loadgen
