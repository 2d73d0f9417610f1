// Readers for message content arriving through DATA and BDAT.
//
// STANDARDS: RFC 5321 4.1.1.4 and 4.5.2 (DATA, dot-stuffing), 4.5.3.1.6 (text line length);
// RFC 3030 (BDAT chunks).
// SECURITY: this is where SMTP smuggling is stopped. Only CR LF "." CR LF, with every CR and LF paired,
// ends DATA: a bare LF or bare CR never starts a new line, so "\n.\n", "\n.\r\n", "\r.\r\n", "\r.\r"
// and "\r\n\0.\r\n" are all message content — and a message containing a bare CR or LF is refused
// after the real end of data, so nothing the next hop could read differently is ever relayed.
// Memory use is constant: content streams into the BodySink as it arrives.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mxedge::smtp {

// Where the canonical (CRLF, un-stuffed) content goes. Implemented by the spool.
class BodySink {
 public:
  virtual ~BodySink() = default;
  // Failures (disk full) are remembered by the sink and reported when the message is committed.
  virtual void append(std::string_view data) = 0;
};

struct ContentFlags {
  bool bare_cr_or_lf = false;
  bool line_too_long = false;
  bool too_big = false;
  uint64_t size = 0;  // canonical octets accepted so far (counted even past the limit)

  bool acceptable() const { return !bare_cr_or_lf && !line_too_long && !too_big; }
};

class DataReader {
 public:
  // max_line_length includes the CRLF, as in RFC 5321.
  DataReader(uint64_t max_size, uint32_t max_line_length, BodySink* sink);

  // Consumes DATA bytes up to and including the terminating CRLF.CRLF; returns how many were consumed.
  // Bytes after the terminator are left for the command parser.
  size_t feed(std::string_view input);
  bool done() const { return state_ == State::kDone; }
  const ContentFlags& flags() const { return flags_; }

 private:
  enum class State { kLineStart, kInLine, kCr, kDot, kDotCr, kDone };
  void emit(std::string_view data);
  void taint() { flags_.bare_cr_or_lf = true; }

  uint64_t max_size_;
  uint32_t max_line_;
  BodySink* sink_;
  State state_ = State::kLineStart;  // the DATA command's own CRLF precedes the first line
  uint32_t line_len_ = 0;
  ContentFlags flags_;
};

// Checks and forwards BDAT chunk content. BDAT carries no dot-stuffing; CR and LF must still be paired
// because mxedge relays in canonical form (and may have to use DATA on the next hop).
class ChunkReader {
 public:
  ChunkReader(uint64_t max_size, uint32_t max_line_length, BodySink* sink);
  void feed(std::string_view data);
  // After the LAST chunk: a trailing CR with no LF is bare.
  void finish();
  const ContentFlags& flags() const { return flags_; }

 private:
  uint64_t max_size_;
  uint32_t max_line_;
  BodySink* sink_;
  bool prev_cr_ = false;
  uint32_t line_len_ = 0;
  ContentFlags flags_;
};

// Watches the canonical content on its way to the real sink for an RFC 8689 section 3
// "TLS-Required: No" header field, without holding the message: only the header field being read is
// kept (bounded), and once the header section ends (the first empty line) every later byte is passed
// on untouched. Folded fields are unfolded before they are judged; the field name and the value "No"
// are case-insensitive and whitespace around the value is ignored. A field longer than the bound is
// not a "TLS-Required: No" field (the value is one word).
class HeaderScanner final : public BodySink {
 public:
  explicit HeaderScanner(BodySink* next) : next_(next) {}
  void append(std::string_view data) override;
  // After the last byte: judges a field the content ended in.
  void finish();
  bool tls_required_no() const { return tls_required_no_; }
  bool in_header() const { return in_header_; }

  static constexpr size_t kMaxField = 256;

 private:
  void end_field();

  BodySink* next_;
  bool in_header_ = true;
  bool at_line_start_ = true;  // the content starts at a line start (after our Received: header)
  bool prev_cr_ = false;
  bool line_empty_ = true;     // nothing but the CR so far on the current line
  std::string field_;          // the unfolded field being read (up to kMaxField + 1 octets)
  bool tls_required_no_ = false;
};

}  // namespace mxedge::smtp
