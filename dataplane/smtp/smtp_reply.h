// Parsing of SMTP replies received from a server (the next hop): "250-..." continuation lines and the
// final "250 ..." line form one reply.
//
// STANDARDS: RFC 5321 4.2 (reply syntax), 4.5.3.1.5 (reply line length), RFC 2034 (enhanced codes).
// SECURITY: the server may be hostile or broken: lines are bounded, codes must be three digits and
// agree across a multi-line reply, and anything else is a protocol error, not a guess.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mxedge::smtp {

struct Reply {
  int code = 0;
  std::vector<std::string> lines;  // the text after "NNN-" / "NNN " of each line

  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
  std::string text() const;  // "250 first line" (multi-line replies joined with " / ")
};

class ReplyParser {
 public:
  enum class Result { kNeedMore, kReply, kError };

  explicit ReplyParser(size_t max_line = 4096, size_t max_lines = 128) : max_line_(max_line), max_lines_(max_lines) {}

  // Consumes bytes from input until one complete reply is parsed (kReply; take it with take()), more
  // input is needed (kNeedMore; everything was consumed), or the input is malformed (kError).
  Result feed(std::string_view& input);
  Reply take();
  const std::string& error() const { return error_; }

 private:
  size_t max_line_;
  size_t max_lines_;
  std::string line_;
  Reply reply_;
  std::string error_;
};

// True when the EHLO reply lists keyword (case-insensitive), e.g. "STARTTLS", "SIZE".
bool ehlo_has(const Reply& ehlo, std::string_view keyword);

}  // namespace mxedge::smtp
