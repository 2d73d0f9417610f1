// message_template.cc - the test messages mxedge-loadgen sends.
//
// DESCRIPTION
//   The body is laid out line by line so that its size hits the target
//   exactly: full lines are 78 characters plus CRLF; when fewer than three
//   octets would be left for the last line (a line needs at least one character
//   and CRLF), the line before it is shortened instead. Only a body of one or
//   two octets cannot be honoured; it becomes a three-octet line.
//
// STANDARDS
//   RFC 5322 section 2.1.1 (78 characters per line), 3.3 (date-time), 3.6.4
//   (msg-id). RFC 5321 section 4.5.2 (dot-stuffing).
//
// SECURITY
//   See message_template.h.
#include "message_template.h"

#include <fmt/format.h>

#include <array>
#include <ctime>
#include <iterator>

namespace mxedge::loadgen {

namespace {

constexpr std::size_t kFullLine = 80;  // 78 characters + CRLF
constexpr std::size_t kMinLine = 3;    // one character + CRLF

// Printable ASCII without space, so that no line ends in white space that a
// server might trim.
constexpr std::string_view kAlphabet =
    "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
    "abcdefghijklmnopqrstuvwxyz{|}~";
constexpr std::size_t kDotOffset = 13;  // kAlphabet[13] == '.'

void append_line(std::string& wire, std::size_t line_octets, std::size_t line_number) {
  const std::size_t chars = line_octets - 2;
  std::size_t offset = (kDotOffset + 7 * line_number) % kAlphabet.size();
  if (kAlphabet[offset] == '.') wire.push_back('.');
  for (std::size_t i = 0; i < chars; ++i) {
    wire.push_back(kAlphabet[offset]);
    offset = offset + 1 == kAlphabet.size() ? 0 : offset + 1;
  }
  wire.append("\r\n");
}

}  // namespace

std::string rfc5322_date(std::time_t when) {
  std::tm tm{};
  gmtime_r(&when, &tm);
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000", kDays[static_cast<std::size_t>(tm.tm_wday) % 7],
                     tm.tm_mday, kMonths[static_cast<std::size_t>(tm.tm_mon) % 12], tm.tm_year + 1900, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

MessageTemplate::MessageTemplate(const MessageSpec& spec) : spec_(spec) {
  std::string sample;
  append_headers(sample, rfc5322_date(0), 0, 0, 0);
  header_size_ = sample.size();

  std::size_t body = spec_.size > header_size_ ? spec_.size - header_size_ : 0;
  if (body > 0 && body < kMinLine) body = kMinLine;
  body_size_ = body;

  wire_body_.reserve(body + body / kFullLine + 8);
  std::size_t left = body;
  std::size_t line_number = 0;
  // A lone "." is the line whose stuffing matters most: unstuffed it would end
  // the message early.
  if (left == kMinLine || left >= 2 * kMinLine) {
    wire_body_.append("..\r\n");
    left -= kMinLine;
  }
  while (left > 0) {
    std::size_t line = kFullLine;
    if (left <= kFullLine) {
      line = left;
    } else if (left - kFullLine < kMinLine) {
      line = left - kMinLine;
    }
    append_line(wire_body_, line, ++line_number);
    left -= line;
  }
  wire_body_.append(".\r\n");
}

void MessageTemplate::append_headers(std::string& out, std::string_view date, std::uint64_t run_id, unsigned worker,
                                     std::uint64_t sequence) const {
  fmt::format_to(std::back_inserter(out),
                 "From: <{}>\r\n"
                 "To: <{}>\r\n"
                 "Subject: mxedge-loadgen test message {:012}\r\n"
                 "Date: {}\r\n"
                 "Message-ID: <{:016x}.{:04x}.{:012x}@{}>\r\n"
                 "\r\n",
                 spec_.from, spec_.to, sequence % 1000000000000ULL, date, run_id, worker & 0xffffu,
                 sequence & 0xffffffffffffULL, spec_.domain);
}

}  // namespace mxedge::loadgen
