// smtp_reply.h - bounded parser for SMTP server replies.
//
// DESCRIPTION
//   SmtpReplyParser turns the byte stream a server sends into complete replies.
//   A reply is one or more lines "ddd-text" ending with a line "ddd text" (or a
//   bare "ddd"). The parser keeps only what the load generator needs: the code,
//   the first line's text (for error reports) and, for EHLO replies, the service
//   extensions that change how the client behaves (PIPELINING, STARTTLS, SIZE).
//
//   feed() stops after each complete reply so that the caller can act on it
//   before looking at the bytes that follow. That matters after "220" to
//   STARTTLS: any byte that follows it in plaintext was not protected by TLS and
//   must not be taken as part of the encrypted session.
//
// STANDARDS
//   RFC 5321 section 4.2 (reply syntax), section 4.5.3.1.5 (reply line length).
//   RFC 2920 (PIPELINING), RFC 3207 (STARTTLS), RFC 1870 (SIZE) keywords.
//
// SECURITY
//   Input comes from the server under test, which may be broken or hostile.
//   Memory is bounded: a partial line may not exceed kMaxLineLength and a reply
//   may not have more than kMaxLines lines; the retained text is truncated to
//   kMaxTextLength. Violations end the reply with an error rather than growing.
//   Continuation lines must repeat the first line's code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mxedge::loadgen {

// EHLO keywords the client acts upon (a bit set).
enum EhloExtension : std::uint32_t {
  kExtPipelining = 1u << 0,
  kExtStarttls = 1u << 1,
  kExtSize = 1u << 2,
};

struct SmtpReply {
  int code = 0;
  // First line's text after "ddd" and the separator, truncated and with
  // control characters replaced, safe to print and to store in reports.
  std::string text;
  // EhloExtension bits seen on lines after the first.
  std::uint32_t extensions = 0;
};

class SmtpReplyParser {
 public:
  static constexpr std::size_t kMaxLineLength = 2048;
  static constexpr std::size_t kMaxLines = 128;
  static constexpr std::size_t kMaxTextLength = 200;

  enum class Status { kNeedMore, kReply, kError };

  // Consumes bytes from input up to and including the end of the next
  // complete reply. Sets consumed to the number of bytes used. kReply: reply()
  // holds it until the next feed(). kError: error() says why; the stream is
  // unusable afterwards.
  Status feed(std::string_view input, std::size_t& consumed);

  [[nodiscard]] const SmtpReply& reply() const { return reply_; }
  [[nodiscard]] const char* error() const { return error_; }
  // True when bytes of an unfinished reply are buffered.
  [[nodiscard]] bool has_partial() const { return !line_.empty() || lines_ != 0; }
  // Drops buffered capacity; used when a session goes idle for a long time.
  void release_memory();

 private:
  Status take_line(std::string_view line);

  std::string line_;
  SmtpReply reply_;
  std::size_t lines_ = 0;
  const char* error_ = "";
};

// Printable form of untrusted text: bytes outside 0x20..0x7e become '?', and
// the result is at most max_length bytes.
std::string sanitize_text(std::string_view text, std::size_t max_length);

}  // namespace mxedge::loadgen
