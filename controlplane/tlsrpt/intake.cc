#include "controlplane/tlsrpt/intake.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

namespace mxedge::tlsrpt {
namespace {

// RFC 2046 limits a boundary to 70 characters; a longer one is hostile or broken.
constexpr size_t kMaxBoundary = 200;
// An unfolded header field we keep (more is cut: From and Subject are shown, not interpreted).
constexpr size_t kMaxHeaderValue = 64 << 10;

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

// A MIME entity: its header fields (names lower-cased, values unfolded) and its body.
struct Entity {
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;

  // The first field named `name` (lower case), trimmed; "" when absent.
  std::string_view get(std::string_view name) const {
    for (const auto& [n, v] : headers)
      if (n == name) return trim(v);
    return {};
  }
};

// The header section ends at the first empty line; lines are CRLF or bare LF. A line starting with
// SP/HT continues the previous field (RFC 5322 2.2.3: unfolding removes only the line break). A line
// that is neither a field nor a continuation is skipped. Without an empty line the whole entity is
// header and the body is empty.
Entity parse_entity(std::string_view s) {
  Entity e;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t eol = s.find('\n', pos);
    const size_t next = eol == std::string_view::npos ? s.size() : eol + 1;
    std::string_view line = s.substr(pos, (eol == std::string_view::npos ? s.size() : eol) - pos);
    pos = next;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      e.body = s.substr(next);
      return e;
    }
    if (line.front() == ' ' || line.front() == '\t') {
      if (!e.headers.empty() && e.headers.back().second.size() < kMaxHeaderValue) e.headers.back().second.append(line);
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);  // obs-optional
    std::string_view value = line.substr(colon + 1);
    if (value.size() > kMaxHeaderValue) value = value.substr(0, kMaxHeaderValue);
    e.headers.emplace_back(lower(name), std::string(value));
  }
  return e;
}

// The parts of a multipart body: delimiter lines are "--boundary" at the start of a line followed only
// by transport padding (a longer boundary sharing the prefix is not ours); the close delimiter adds
// "--". The line break before a delimiter belongs to it. An unterminated last part runs to the end.
// Linear: only line starts are compared with the delimiter.
std::vector<std::string_view> split_multipart(std::string_view body, std::string_view boundary) {
  const std::string delim = "--" + std::string(boundary);
  std::vector<std::string_view> parts;
  size_t part_start = std::string_view::npos;
  size_t pos = 0;
  while (pos <= body.size()) {
    const size_t eol = body.find('\n', pos);
    const size_t line_end = eol == std::string_view::npos ? body.size() : eol;
    const size_t next = eol == std::string_view::npos ? body.size() + 1 : eol + 1;
    std::string_view line = body.substr(pos, line_end - pos);
    if (line.starts_with(delim)) {
      std::string_view rest = line.substr(delim.size());
      const bool close = rest.starts_with("--");
      if (close) rest.remove_prefix(2);
      if (close || trim(rest).empty()) {
        if (part_start != std::string_view::npos) {
          size_t end = pos;
          if (end > part_start && body[end - 1] == '\n') --end;
          if (end > part_start && body[end - 1] == '\r') --end;
          parts.push_back(body.substr(part_start, end - part_start));
        }
        if (close) return parts;
        part_start = std::min(next, body.size());
      }
    }
    pos = next;
  }
  if (part_start != std::string_view::npos) parts.push_back(body.substr(part_start));
  return parts;
}

bool is_report_type(const std::string& type) {
  return type == "application/tlsrpt+gzip" || type == "application/tlsrpt+json";
}

struct Found {
  std::string type;
  std::string transfer_encoding;
  std::string_view content;
};

ContentType content_type_of(const Entity& e) {
  auto ct = parse_content_type(e.get("content-type"));
  if (ct) return *ct;
  return ContentType{"text/plain", {}};  // RFC 2045 5.2's default, also for an unparsable field
}

// Searches `e` (depth 0: the message) for the report part; nested multiparts one level deep.
std::optional<Found> find_report(const Entity& e, const ContentType& ct, int depth, std::string* error) {
  if (is_report_type(ct.type)) return Found{ct.type, lower(trim(e.get("content-transfer-encoding"))), e.body};
  if (!ct.type.starts_with("multipart/") || depth > 1) return std::nullopt;
  const auto b = ct.params.find("boundary");
  if (b == ct.params.end() || b->second.empty() || b->second.size() > kMaxBoundary) {
    if (error->empty()) error->assign(ct.type + " without a usable boundary parameter");
    return std::nullopt;
  }
  for (std::string_view part : split_multipart(e.body, b->second)) {
    const Entity pe = parse_entity(part);
    const ContentType pct = content_type_of(pe);
    if (auto f = find_report(pe, pct, depth + 1, error)) return f;
  }
  return std::nullopt;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 2045 6.7, leniently: soft line breaks removed, "=XX" decoded, a stray '=' kept.
std::string qp_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '=') {
      out.push_back(s[i]);
      continue;
    }
    if (s.substr(i + 1).starts_with("\r\n")) {
      i += 2;
    } else if (s.substr(i + 1).starts_with("\n")) {
      i += 1;
    } else if (i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back('=');
    }
  }
  return out;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string byte_text(unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", c);
  return buf;
}

}  // namespace

std::optional<ContentType> parse_content_type(std::string_view value) {
  size_t i = 0;
  const auto skip_ws = [&] {
    while (i < value.size() && is_ws(value[i])) ++i;
  };
  // RFC 2045 token characters: anything printable but SP and tspecials.
  const auto token = [&] {
    const size_t start = i;
    while (i < value.size()) {
      const char c = value[i];
      if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) break;
      if (std::string_view("()<>@,;:\\\"/[]?=").find(c) != std::string_view::npos) break;
      ++i;
    }
    return value.substr(start, i - start);
  };
  skip_ws();
  const std::string_view type = token();
  skip_ws();
  if (type.empty() || i >= value.size() || value[i] != '/') return std::nullopt;
  ++i;
  skip_ws();
  const std::string_view subtype = token();
  if (subtype.empty()) return std::nullopt;
  ContentType ct;
  ct.type = lower(type) + "/" + lower(subtype);
  while (true) {
    skip_ws();
    if (i >= value.size() || value[i] != ';') break;
    ++i;
    skip_ws();
    const std::string name = lower(token());
    skip_ws();
    if (name.empty() || i >= value.size() || value[i] != '=') break;  // a broken parameter ends the list
    ++i;
    skip_ws();
    std::string v;
    if (i < value.size() && value[i] == '"') {
      ++i;
      bool closed = false;
      while (i < value.size()) {
        const char c = value[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < value.size()) v.push_back(value[i++]);
        else v.push_back(c);
      }
      if (!closed) break;
    } else {
      v = std::string(token());
    }
    ct.params.try_emplace(name, std::move(v));  // the first of a repeated parameter counts
  }
  return ct;
}

std::optional<std::string> base64_decode(std::string_view text, std::string* error) {
  const auto fail = [error](std::string why) -> std::optional<std::string> {
    if (error != nullptr) *error = std::move(why);
    return std::nullopt;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  int n = 0, pad = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == '=') {
      if (n < 2 || n + pad >= 4) return fail("misplaced '=' at octet " + std::to_string(i));
      ++pad;
      continue;
    }
    if (pad > 0) return fail("data after the '=' padding at octet " + std::to_string(i));
    const int v = base64_value(c);
    if (v < 0) return fail("invalid character " + byte_text(static_cast<unsigned char>(c)) + " at octet " + std::to_string(i));
    acc = acc << 6 | static_cast<uint32_t>(v);
    if (++n == 4) {
      out.push_back(static_cast<char>(acc >> 16 & 0xff));
      out.push_back(static_cast<char>(acc >> 8 & 0xff));
      out.push_back(static_cast<char>(acc & 0xff));
      acc = 0;
      n = 0;
    }
  }
  if (pad > 0 && n + pad != 4) return fail("incomplete '=' padding");
  if (n == 1) return fail("truncated (a dangling character at the end)");
  if (n == 2) out.push_back(static_cast<char>(acc >> 4 & 0xff));
  if (n == 3) {
    out.push_back(static_cast<char>(acc >> 10 & 0xff));
    out.push_back(static_cast<char>(acc >> 2 & 0xff));
  }
  return out;
}

std::string clean_text(std::string_view s, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes));
  size_t i = 0;
  const auto cont = [&s](size_t k, unsigned char lo = 0x80, unsigned char hi = 0xbf) {
    return k < s.size() && static_cast<unsigned char>(s[k]) >= lo && static_cast<unsigned char>(s[k]) <= hi;
  };
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    bool control = false;
    if (c < 0x80) {
      len = 1;
      control = c < 0x20 || c == 0x7f;
    } else if (c >= 0xc2 && c <= 0xdf && cont(i + 1)) {
      len = 2;
      control = c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0;  // C1 controls
    } else if (c == 0xe0 && cont(i + 1, 0xa0) && cont(i + 2)) {
      len = 3;
    } else if (((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) && cont(i + 1) && cont(i + 2)) {
      len = 3;
    } else if (c == 0xed && cont(i + 1, 0x80, 0x9f) && cont(i + 2)) {
      len = 3;
    } else if (c == 0xf0 && cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3)) {
      len = 4;
    } else if (c >= 0xf1 && c <= 0xf3 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      len = 4;
    } else if (c == 0xf4 && cont(i + 1, 0x80, 0x8f) && cont(i + 2) && cont(i + 3)) {
      len = 4;
    }
    const std::string_view piece = len == 0 ? std::string_view("\xef\xbf\xbd") : control ? std::string_view(" ") : s.substr(i, len);
    if (out.size() + piece.size() > max_bytes) break;
    out.append(piece);
    i += len == 0 ? 1 : len;
  }
  return out;
}

ReceivedReport extract_report(std::string_view message, const ExtractOptions& options) {
  ReceivedReport r;
  const Entity top = parse_entity(message);
  const auto field = [&top](std::string_view name) { return std::string(trim(clean_text(top.get(name)))); };
  r.from = field("from");
  r.subject = field("subject");
  r.message_id = field("message-id");
  r.report_domain = field("tls-report-domain");
  r.report_submitter = field("tls-report-submitter");

  const ContentType ct = content_type_of(top);
  std::string structure_error;
  const std::optional<Found> found = find_report(top, ct, 0, &structure_error);
  if (!found) {
    r.error = "no application/tlsrpt part (top-level type " + clean_text(ct.type, 200) + ")";
    if (!structure_error.empty()) r.error += ": " + clean_text(structure_error, 300);
    return r;
  }
  r.content_type = found->type;

  std::string decoded;
  const std::string& cte = found->transfer_encoding;
  if (cte == "base64") {
    std::string why;
    auto d = base64_decode(found->content, &why);
    if (!d) {
      r.error = "attachment is not valid base64 (" + why + ")";
      return r;
    }
    decoded = std::move(*d);
  } else if (cte == "quoted-printable") {
    decoded = qp_decode(found->content);
  } else if (cte.empty() || cte == "7bit" || cte == "8bit" || cte == "binary") {
    decoded = std::string(found->content);
  } else {
    r.error = "unsupported Content-Transfer-Encoding '" + clean_text(cte, 100) + "'";
    return r;
  }

  std::string json;
  const bool gzip_magic = decoded.size() >= 2 && static_cast<unsigned char>(decoded[0]) == 0x1f &&
                          static_cast<unsigned char>(decoded[1]) == 0x8b;
  if (gzip_magic || found->type == "application/tlsrpt+gzip") {
    std::string why;
    auto out = gunzip(decoded, options.max_json, &why);
    if (!out) {
      r.error = "gzip: " + why;
      return r;
    }
    json = std::move(*out);
  } else {
    if (decoded.size() > options.max_json) {
      r.error = "report JSON exceeds " + std::to_string(options.max_json) + " bytes";
      return r;
    }
    json = std::move(decoded);
  }

  std::string why;
  r.report = parse_json(json, &why);
  if (!r.report) r.error = why.empty() ? std::string("invalid report JSON") : clean_text(why, 2000);
  return r;
}

}  // namespace mxedge::tlsrpt
