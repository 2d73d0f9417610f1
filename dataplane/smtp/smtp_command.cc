// SMTP command-line parsing; see smtp_command.h for the standards and the security stance.
#include "dataplane/smtp/smtp_command.h"

#include <array>
#include <charconv>

namespace mxedge::smtp {
namespace {

constexpr size_t kMaxLocalPart = 64;   // RFC 5321 4.5.3.1.1
constexpr size_t kMaxDomain = 255;     // RFC 5321 4.5.3.1.2
constexpr size_t kMaxPath = 256;       // RFC 5321 4.5.3.1.3
constexpr size_t kMaxEnvid = 100;      // RFC 3461 4.4
constexpr size_t kMaxOrcpt = 500;      // RFC 3461 4.2

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }

// RFC 5322 atext as used by RFC 5321 Atom.
bool is_atext(unsigned char c) {
  if (is_alnum(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-': case '/':
    case '=': case '?': case '^': case '_': case '`': case '{': case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

// Length of a well-formed UTF-8 sequence starting at s[i] with a non-ASCII lead byte, or 0.
size_t utf8_sequence(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) n = 3;
  else if (c >= 0xf0 && c <= 0xf4) n = 4;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
  }
  // Overlong and surrogate forms.
  if (c == 0xe0 && b(i + 1) < 0xa0) return 0;
  if (c == 0xed && b(i + 1) > 0x9f) return 0;
  if (c == 0xf0 && b(i + 1) < 0x90) return 0;
  if (c == 0xf4 && b(i + 1) > 0x8f) return 0;
  return n;
}

struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool at_end() const { return i >= s.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(s[i]); }
};

// Dot-string local part; UTF-8 allowed (flagged) per RFC 6531.
bool parse_dot_string(Cursor& c, Mailbox& m) {
  size_t start = c.i;
  bool need_atom = true;
  while (!c.at_end()) {
    unsigned char ch = c.peek();
    if (is_atext(ch)) {
      ++c.i;
      need_atom = false;
    } else if (ch >= 0x80) {
      size_t n = utf8_sequence(c.s, c.i);
      if (n == 0) return false;
      c.i += n;
      m.non_ascii = true;
      need_atom = false;
    } else if (ch == '.') {
      if (need_atom) return false;
      ++c.i;
      need_atom = true;
    } else {
      break;
    }
  }
  if (need_atom) return false;
  m.local_part.assign(c.s.substr(start, c.i - start));
  return true;
}

bool parse_quoted_string(Cursor& c, Mailbox& m) {
  size_t start = c.i;
  ++c.i;  // opening quote
  while (!c.at_end()) {
    unsigned char ch = c.peek();
    if (ch == '"') {
      ++c.i;
      m.local_part.assign(c.s.substr(start, c.i - start));
      m.quoted_local = true;
      return c.i - start > 2;  // "" is not a useful local part
    }
    if (ch == '\\') {
      if (c.i + 1 >= c.s.size()) return false;
      unsigned char next = static_cast<unsigned char>(c.s[c.i + 1]);
      if (next < 32 || next > 126) return false;
      c.i += 2;
    } else if (ch == 32 || ch == 33 || (ch >= 35 && ch <= 91) || (ch >= 93 && ch <= 126)) {
      ++c.i;
    } else if (ch >= 0x80) {
      size_t n = utf8_sequence(c.s, c.i);
      if (n == 0) return false;
      c.i += n;
      m.non_ascii = true;
    } else {
      return false;
    }
  }
  return false;
}

bool parse_domain_name(Cursor& c, std::string& out, bool& non_ascii) {
  size_t start = c.i;
  size_t label_len = 0;
  unsigned char prev = '.';
  while (!c.at_end()) {
    unsigned char ch = c.peek();
    if (is_alnum(ch) || ch == '-') {
      if (label_len == 0 && ch == '-') return false;
      ++label_len;
      ++c.i;
    } else if (ch >= 0x80) {
      size_t n = utf8_sequence(c.s, c.i);
      if (n == 0) return false;
      c.i += n;
      label_len += n;
      non_ascii = true;
    } else if (ch == '.') {
      if (label_len == 0 || prev == '-') return false;
      label_len = 0;
      ++c.i;
    } else {
      break;
    }
    if (label_len > 63) return false;
    prev = ch;
  }
  if (label_len == 0 || prev == '-') return false;  // also rejects a trailing dot
  out.assign(c.s.substr(start, c.i - start));
  return out.size() <= kMaxDomain;
}

bool parse_ipv4(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = i;
    while (j < s.size() && is_digit(static_cast<unsigned char>(s[j]))) ++j;
    if (j == i || j - i > 3) return false;
    unsigned v = 0;
    std::from_chars(s.data() + i, s.data() + j, v);
    if (v > 255) return false;
    ++parts;
    if (j == s.size()) break;
    if (s[j] != '.') return false;
    i = j + 1;
  }
  return parts == 4;
}

bool parse_address_literal(Cursor& c, std::string& out) {
  size_t start = c.i;
  ++c.i;  // '['
  size_t content_start = c.i;
  while (!c.at_end() && c.peek() != ']') {
    unsigned char ch = c.peek();
    if (!((ch >= 33 && ch <= 90) || (ch >= 94 && ch <= 126))) return false;  // dcontent
    ++c.i;
  }
  if (c.at_end()) return false;
  std::string_view content = c.s.substr(content_start, c.i - content_start);
  ++c.i;  // ']'
  if (content.empty()) return false;
  bool ok = parse_ipv4(content);
  if (!ok) {
    auto colon = content.find(':');
    if (colon != std::string_view::npos && colon > 0) {
      // IPv6 or General-address-literal: Standardized-tag ":" 1*dcontent.
      ok = colon + 1 < content.size();
      for (size_t k = 0; k < colon && ok; ++k) {
        unsigned char ch = static_cast<unsigned char>(content[k]);
        ok = is_alnum(ch) || ch == '-';
      }
    }
  }
  if (!ok) return false;
  out.assign(c.s.substr(start, c.i - start));
  return true;
}

bool parse_domain(Cursor& c, Mailbox& m) {
  if (!c.at_end() && c.peek() == '[') {
    m.address_literal = true;
    return parse_address_literal(c, m.domain);
  }
  return parse_domain_name(c, m.domain, m.non_ascii);
}

// A-d-l = At-domain *( "," At-domain ) ":"
bool parse_source_route(Cursor& c, Mailbox& m) {
  while (true) {
    if (c.at_end() || c.peek() != '@') return false;
    ++c.i;
    std::string ignored;
    bool na = false;
    if (!parse_domain_name(c, ignored, na)) return false;
    if (c.at_end()) return false;
    if (c.peek() == ',') {
      ++c.i;
      continue;
    }
    if (c.peek() == ':') {
      ++c.i;
      m.source_route = true;
      return true;
    }
    return false;
  }
}

struct Param {
  std::string_view keyword;
  std::string_view value;
  bool has_value = false;
  std::string_view text;
};

// Splits the parameter list after the path. Returns false on syntax errors.
bool split_params(std::string_view rest, std::vector<Param>& out, std::string& bad) {
  size_t i = 0;
  while (i < rest.size()) {
    if (rest[i] != ' ') {
      bad.assign(rest.substr(i));
      return false;
    }
    while (i < rest.size() && rest[i] == ' ') ++i;
    if (i >= rest.size()) break;  // trailing spaces
    size_t start = i;
    while (i < rest.size() && rest[i] != ' ') ++i;
    std::string_view text = rest.substr(start, i - start);
    Param p;
    p.text = text;
    auto eq = text.find('=');
    p.keyword = text.substr(0, eq);
    if (eq != std::string_view::npos) {
      p.has_value = true;
      p.value = text.substr(eq + 1);
    }
    bool ok = !p.keyword.empty() && is_alnum(static_cast<unsigned char>(p.keyword[0]));
    for (unsigned char ch : p.keyword) ok = ok && (is_alnum(ch) || ch == '-');
    if (p.has_value) {
      ok = ok && !p.value.empty();
      for (unsigned char ch : p.value) ok = ok && ((ch >= 33 && ch <= 60) || (ch >= 62 && ch <= 126) || ch >= 0x80);
    }
    if (!ok) {
      bad.assign(text);
      return false;
    }
    out.push_back(p);
  }
  return true;
}

// "FROM:" / "TO:" prefix, case-insensitive, with optional spaces after the colon.
bool strip_keyword(std::string_view& args, std::string_view keyword) {
  if (args.size() < keyword.size() || !iequals(args.substr(0, keyword.size()), keyword)) return false;
  args.remove_prefix(keyword.size());
  while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
  return true;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (upper(a[i]) != upper(b[i])) return false;
  }
  return true;
}

std::string Mailbox::address() const {
  if (null_path) return {};
  if (postmaster && domain.empty()) return local_part;
  return local_part + "@" + domain;
}

Command parse_command(std::string_view line) {
  static constexpr std::array<std::pair<std::string_view, Verb>, 13> kVerbs{{
      {"EHLO", Verb::kEhlo}, {"HELO", Verb::kHelo}, {"MAIL", Verb::kMail}, {"RCPT", Verb::kRcpt},
      {"DATA", Verb::kData}, {"BDAT", Verb::kBdat}, {"RSET", Verb::kRset}, {"NOOP", Verb::kNoop},
      {"QUIT", Verb::kQuit}, {"HELP", Verb::kHelp}, {"STARTTLS", Verb::kStarttls}, {"VRFY", Verb::kVrfy},
      {"EXPN", Verb::kExpn},
  }};
  Command cmd;
  size_t sp = line.find(' ');
  std::string_view verb = line.substr(0, sp);
  for (const auto& [name, v] : kVerbs) {
    if (iequals(verb, name)) {
      cmd.verb = v;
      break;
    }
  }
  if (sp != std::string_view::npos) {
    std::string_view args = line.substr(sp);
    while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
    while (!args.empty() && (args.back() == ' ' || args.back() == '\t')) args.remove_suffix(1);
    cmd.args = args;
  }
  return cmd;
}

size_t parse_path(std::string_view text, Mailbox& m, PathError& error) {
  error = PathError::kSyntax;
  Cursor c{text, 0};
  if (c.at_end() || c.peek() != '<') return 0;
  ++c.i;
  if (!c.at_end() && c.peek() == '>') {
    m.null_path = true;
    error = PathError::kNone;
    return c.i + 1;
  }
  if (!c.at_end() && c.peek() == '@' && !parse_source_route(c, m)) return 0;
  if (c.at_end()) return 0;
  if (c.peek() == '"') {
    if (!parse_quoted_string(c, m)) return 0;
  } else if (!parse_dot_string(c, m)) {
    return 0;
  }
  if (!c.at_end() && c.peek() == '>' && !m.quoted_local && iequals(m.local_part, "postmaster")) {
    m.postmaster = true;
    ++c.i;
    error = PathError::kNone;
    return c.i;
  }
  if (c.at_end() || c.peek() != '@') return 0;
  ++c.i;
  if (!parse_domain(c, m)) return 0;
  if (c.at_end() || c.peek() != '>') return 0;
  ++c.i;
  if (m.local_part.size() > kMaxLocalPart || c.i - 2 > kMaxPath) {
    error = PathError::kTooLong;
    return 0;
  }
  if (iequals(m.local_part, "postmaster")) m.postmaster = true;
  error = PathError::kNone;
  return c.i;
}

bool is_xtext(std::string_view s) {
  auto hex = [](unsigned char h) { return is_digit(h) || (h >= 'A' && h <= 'F'); };
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char ch = static_cast<unsigned char>(s[i]);
    if (ch == '+') {
      if (s.size() - i < 3) return false;
      if (!hex(static_cast<unsigned char>(s[i + 1])) || !hex(static_cast<unsigned char>(s[i + 2]))) return false;
      i += 2;
    } else if (ch < 33 || ch > 126 || ch == '=') {
      return false;
    }
  }
  return true;
}

MailParseResult parse_mail_from(std::string_view args) {
  MailParseResult r;
  if (!strip_keyword(args, "FROM:")) {
    r.path_error = PathError::kSyntax;
    return r;
  }
  size_t used = parse_path(args, r.args.sender, r.path_error);
  if (used == 0) return r;
  if (r.args.sender.postmaster && r.args.sender.domain.empty()) {
    r.path_error = PathError::kSyntax;  // <Postmaster> is a forward-path only
    return r;
  }
  std::vector<Param> params;
  if (!split_params(args.substr(used), params, r.bad_param)) {
    r.param_error = ParamError::kSyntax;
    return r;
  }
  bool seen_size = false, seen_body = false, seen_ret = false, seen_envid = false;
  for (const Param& p : params) {
    auto fail = [&](ParamError e) {
      r.param_error = e;
      r.bad_param.assign(p.text);
      return r;
    };
    if (iequals(p.keyword, "SIZE")) {
      if (seen_size) return fail(ParamError::kDuplicate);
      seen_size = true;
      uint64_t v = 0;
      auto [ptr, ec] = std::from_chars(p.value.data(), p.value.data() + p.value.size(), v);
      if (!p.has_value || p.value.size() > 20 || ec != std::errc() || ptr != p.value.data() + p.value.size())
        return fail(ParamError::kSyntax);
      r.args.size = v;
    } else if (iequals(p.keyword, "BODY")) {
      if (seen_body) return fail(ParamError::kDuplicate);
      seen_body = true;
      if (iequals(p.value, "7BIT")) r.args.body = BodyParam::k7Bit;
      else if (iequals(p.value, "8BITMIME")) r.args.body = BodyParam::k8BitMime;
      else return fail(ParamError::kUnsupported);  // BINARYMIME is not offered
    } else if (iequals(p.keyword, "SMTPUTF8")) {
      if (r.args.smtputf8) return fail(ParamError::kDuplicate);
      if (p.has_value) return fail(ParamError::kSyntax);
      r.args.smtputf8 = true;
    } else if (iequals(p.keyword, "REQUIRETLS")) {
      // RFC 8689 2: a keyword without a value. Whether the session may use it (TLS) is the
      // session's decision, not the grammar's.
      if (r.args.requiretls) return fail(ParamError::kDuplicate);
      if (p.has_value) return fail(ParamError::kSyntax);
      r.args.requiretls = true;
    } else if (iequals(p.keyword, "RET")) {
      if (seen_ret) return fail(ParamError::kDuplicate);
      seen_ret = true;
      if (iequals(p.value, "FULL")) r.args.ret = RetParam::kFull;
      else if (iequals(p.value, "HDRS")) r.args.ret = RetParam::kHdrs;
      else return fail(ParamError::kSyntax);
    } else if (iequals(p.keyword, "ENVID")) {
      if (seen_envid) return fail(ParamError::kDuplicate);
      seen_envid = true;
      if (!p.has_value || p.value.size() > kMaxEnvid || !is_xtext(p.value)) return fail(ParamError::kSyntax);
      r.args.envid.assign(p.value);
    } else {
      return fail(ParamError::kUnsupported);
    }
  }
  return r;
}

RcptParseResult parse_rcpt_to(std::string_view args) {
  RcptParseResult r;
  if (!strip_keyword(args, "TO:")) {
    r.path_error = PathError::kSyntax;
    return r;
  }
  size_t used = parse_path(args, r.args.recipient, r.path_error);
  if (used == 0) return r;
  if (r.args.recipient.null_path) {
    r.path_error = PathError::kSyntax;
    return r;
  }
  std::vector<Param> params;
  if (!split_params(args.substr(used), params, r.bad_param)) {
    r.param_error = ParamError::kSyntax;
    return r;
  }
  bool seen_notify = false, seen_orcpt = false;
  for (const Param& p : params) {
    auto fail = [&](ParamError e) {
      r.param_error = e;
      r.bad_param.assign(p.text);
      return r;
    };
    if (iequals(p.keyword, "NOTIFY")) {
      if (seen_notify) return fail(ParamError::kDuplicate);
      seen_notify = true;
      if (!p.has_value) return fail(ParamError::kSyntax);
      uint32_t bits = 0;
      std::string_view v = p.value;
      while (true) {
        auto comma = v.find(',');
        std::string_view item = v.substr(0, comma);
        uint32_t bit = 0;
        if (iequals(item, "NEVER")) bit = kNotifyNever;
        else if (iequals(item, "SUCCESS")) bit = kNotifySuccess;
        else if (iequals(item, "FAILURE")) bit = kNotifyFailure;
        else if (iequals(item, "DELAY")) bit = kNotifyDelay;
        if (bit == 0 || (bits & bit)) return fail(ParamError::kSyntax);
        bits |= bit;
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
      }
      if ((bits & kNotifyNever) && bits != kNotifyNever) return fail(ParamError::kSyntax);
      r.args.notify = bits;
    } else if (iequals(p.keyword, "ORCPT")) {
      if (seen_orcpt) return fail(ParamError::kDuplicate);
      seen_orcpt = true;
      auto semi = p.value.find(';');
      if (!p.has_value || semi == std::string_view::npos || semi == 0 || p.value.size() > kMaxOrcpt)
        return fail(ParamError::kSyntax);
      for (size_t k = 0; k < semi; ++k) {
        unsigned char ch = static_cast<unsigned char>(p.value[k]);
        if (!is_alnum(ch) && ch != '-') return fail(ParamError::kSyntax);
      }
      std::string_view addr = p.value.substr(semi + 1);
      // utf-8-addr-xtext (RFC 6533) allows UTF-8; plain xtext otherwise.
      bool ok = !addr.empty() && (is_xtext(addr) || iequals(p.value.substr(0, semi), "utf-8"));
      if (!ok) return fail(ParamError::kSyntax);
      r.args.orcpt.assign(p.value);
    } else {
      return fail(ParamError::kUnsupported);
    }
  }
  return r;
}

std::optional<BdatArgs> parse_bdat(std::string_view args) {
  BdatArgs b;
  size_t sp = args.find(' ');
  std::string_view num = args.substr(0, sp);
  if (num.empty() || num.size() > 20) return std::nullopt;
  auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), b.size);
  if (ec != std::errc() || ptr != num.data() + num.size()) return std::nullopt;
  if (sp != std::string_view::npos) {
    std::string_view rest = args.substr(sp);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (!iequals(rest, "LAST")) return std::nullopt;
    b.last = true;
  }
  return b;
}

}  // namespace mxedge::smtp
