// SMTP reply parsing; see smtp_reply.h.
#include "dataplane/smtp/smtp_reply.h"

#include "dataplane/smtp/smtp_command.h"

namespace mxedge::smtp {

std::string Reply::text() const {
  std::string s = std::to_string(code);
  for (size_t i = 0; i < lines.size(); ++i) {
    s += i == 0 ? " " : " / ";
    s += lines[i];
  }
  return s;
}

ReplyParser::Result ReplyParser::feed(std::string_view& input) {
  while (!input.empty()) {
    size_t nl = input.find('\n');
    size_t take = nl == std::string_view::npos ? input.size() : nl + 1;
    if (line_.size() + take > max_line_) {
      error_ = "reply line too long";
      return Result::kError;
    }
    line_.append(input.substr(0, take));
    input.remove_prefix(take);
    if (nl == std::string_view::npos) return Result::kNeedMore;
    std::string_view line(line_);
    line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
        (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
      error_ = "malformed reply line";
      return Result::kError;
    }
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (!reply_.lines.empty() && code != reply_.code) {
      error_ = "reply code changed within a multi-line reply";
      return Result::kError;
    }
    reply_.code = code;
    reply_.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view());
    bool last = line.size() == 3 || line[3] == ' ';
    line_.clear();
    if (reply_.lines.size() > max_lines_) {
      error_ = "too many reply lines";
      return Result::kError;
    }
    if (last) return Result::kReply;
  }
  return Result::kNeedMore;
}

Reply ReplyParser::take() {
  Reply r = std::move(reply_);
  reply_ = Reply{};
  return r;
}

bool ehlo_has(const Reply& ehlo, std::string_view keyword) {
  for (size_t i = 1; i < ehlo.lines.size(); ++i) {
    std::string_view l = ehlo.lines[i];
    std::string_view word = l.substr(0, l.find(' '));
    if (iequals(word, keyword)) return true;
  }
  return false;
}

}  // namespace mxedge::smtp
