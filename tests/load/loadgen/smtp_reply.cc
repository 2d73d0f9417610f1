// smtp_reply.cc - bounded parser for SMTP server replies.
//
// DESCRIPTION
//   Lines are split at LF; a CR before it is removed, and a bare LF is accepted
//   because being strict here would only turn a server quirk into a load
//   generator error that hides the figures being measured. A complete line that
//   arrives in one read is parsed in place; only a line split across reads is
//   copied into line_.
//
// STANDARDS
//   RFC 5321 section 4.2: Reply-code = %x32-35 %x30-35 %x30-39, then "-" for a
//   continuation line or SP (or nothing) for the last line.
//
// SECURITY
//   See smtp_reply.h: every buffer is bounded and every violation is an error.
#include "smtp_reply.h"

#include <algorithm>
#include <cstring>

namespace mxedge::loadgen {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool keyword_is(std::string_view line, std::string_view keyword) {
  if (line.size() < keyword.size()) return false;
  for (std::size_t i = 0; i < keyword.size(); ++i) {
    char c = line[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != keyword[i]) return false;
  }
  return line.size() == keyword.size() || line[keyword.size()] == ' ';
}

std::uint32_t extension_of(std::string_view text) {
  if (keyword_is(text, "PIPELINING")) return kExtPipelining;
  if (keyword_is(text, "STARTTLS")) return kExtStarttls;
  if (keyword_is(text, "SIZE")) return kExtSize;
  return 0;
}

}  // namespace

std::string sanitize_text(std::string_view text, std::size_t max_length) {
  std::string out;
  out.reserve(std::min(text.size(), max_length));
  for (char c : text) {
    if (out.size() >= max_length) break;
    out.push_back(c >= 0x20 && c <= 0x7e ? c : '?');
  }
  return out;
}

SmtpReplyParser::Status SmtpReplyParser::take_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() < 3 || line[0] < '2' || line[0] > '5' || !is_digit(line[1]) || !is_digit(line[2]) ||
      (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
    error_ = "malformed reply line";
    return Status::kError;
  }
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  const std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};
  if (lines_ == 0) {
    reply_.code = code;
    reply_.text = sanitize_text(text, kMaxTextLength);
    reply_.extensions = 0;
  } else {
    if (code != reply_.code) {
      error_ = "reply code changed inside a multi-line reply";
      return Status::kError;
    }
    reply_.extensions |= extension_of(text);
  }
  if (++lines_ > kMaxLines) {
    error_ = "too many lines in one reply";
    return Status::kError;
  }
  if (line.size() > 3 && line[3] == '-') return Status::kNeedMore;
  lines_ = 0;
  return Status::kReply;
}

SmtpReplyParser::Status SmtpReplyParser::feed(std::string_view input, std::size_t& consumed) {
  consumed = 0;
  while (consumed < input.size()) {
    const std::string_view rest = input.substr(consumed);
    const void* lf = std::memchr(rest.data(), '\n', rest.size());
    if (lf == nullptr) {
      if (line_.size() + rest.size() > kMaxLineLength) {
        error_ = "reply line too long";
        return Status::kError;
      }
      line_.append(rest);
      consumed = input.size();
      return Status::kNeedMore;
    }
    const auto length = static_cast<std::size_t>(static_cast<const char*>(lf) - rest.data());
    consumed += length + 1;
    Status status;
    if (line_.empty()) {
      if (length > kMaxLineLength) {
        error_ = "reply line too long";
        return Status::kError;
      }
      status = take_line(rest.substr(0, length));
    } else {
      if (line_.size() + length > kMaxLineLength) {
        error_ = "reply line too long";
        return Status::kError;
      }
      line_.append(rest.substr(0, length));
      status = take_line(line_);
      line_.clear();
    }
    if (status != Status::kNeedMore) return status;
  }
  return Status::kNeedMore;
}

void SmtpReplyParser::release_memory() {
  std::string().swap(line_);
  reply_.text.shrink_to_fit();
}

}  // namespace mxedge::loadgen
