#include "policy/mta_sts.h"

#include <cctype>

namespace mxedge::policy {
namespace {

bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool is_ext_name(std::string_view s) {
  if (s.empty() || s.size() > 32 || !is_alnum(s[0])) return false;
  for (char c : s) {
    if (!is_alnum(c) && c != '_' && c != '-' && c != '.') return false;
  }
  return true;
}

// sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]; vchar = VCHAR / UTF-8 (not checked
// beyond "no control characters").
bool is_policy_ext_value(std::string_view v) {
  if (v.empty() || v.front() == ' ' || v.back() == ' ') return false;
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\t') return false;
  }
  return true;
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out.push_back(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  if (s.size() > 64) out += "...";
  return out;
}

}  // namespace

std::string_view to_string(StsMode m) {
  switch (m) {
    case StsMode::kEnforce: return "enforce";
    case StsMode::kTesting: return "testing";
    case StsMode::kNone: return "none";
  }
  return "?";
}

std::string StsError::to_string() const {
  return line ? "line " + std::to_string(line) + ": " + message : message;
}

bool is_a_label_domain(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    const std::string_view label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!is_alnum(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::optional<StsPolicy> parse_sts_policy(std::string_view body, StsError* error) {
  auto fail = [&](size_t line, std::string msg) -> std::optional<StsPolicy> {
    if (error) *error = StsError{line, std::move(msg)};
    return std::nullopt;
  };
  if (body.empty()) return fail(0, "empty policy");
  StsPolicy p;
  bool have_version = false, have_mode = false, have_max_age = false;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < body.size()) {
    ++line_no;
    size_t end = body.find('\n', pos);
    const bool last = end == std::string_view::npos;
    if (last) end = body.size();
    std::string_view line = body.substr(pos, end - pos);
    pos = last ? body.size() : end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos) return fail(line_no, "stray carriage return");
    if (line.empty()) return fail(line_no, "empty line");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail(line_no, "expected 'key: value', found '" + printable(line) + "'");
    const std::string_view key = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && is_wsp(value.front())) value.remove_prefix(1);
    while (!value.empty() && is_wsp(value.back())) value.remove_suffix(1);
    if (!is_ext_name(key)) return fail(line_no, "invalid key '" + printable(key) + "'");
    if (key == "version") {
      if (have_version) continue;  // the first occurrence wins
      if (value != "STSv1") return fail(line_no, "version must be STSv1, found '" + printable(value) + "'");
      have_version = true;
    } else if (key == "mode") {
      if (have_mode) continue;
      if (value == "enforce") p.mode = StsMode::kEnforce;
      else if (value == "testing") p.mode = StsMode::kTesting;
      else if (value == "none") p.mode = StsMode::kNone;
      else return fail(line_no, "mode must be enforce, testing or none, found '" + printable(value) + "'");
      have_mode = true;
    } else if (key == "max_age") {
      if (have_max_age) continue;
      if (value.empty() || value.size() > 10) return fail(line_no, "max_age must be 1 to 10 digits, found '" + printable(value) + "'");
      uint64_t v = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return fail(line_no, "max_age must be a number of seconds, found '" + printable(value) + "'");
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      if (v > kStsMaxAge) return fail(line_no, "max_age " + std::string(value) + " exceeds 31557600 (one year)");
      p.max_age = static_cast<uint32_t>(v);
      have_max_age = true;
    } else if (key == "mx") {
      const bool wildcard = value.starts_with("*.");
      const std::string_view domain = wildcard ? value.substr(2) : value;
      for (char c : domain) {
        if (static_cast<unsigned char>(c) >= 0x80)
          return fail(line_no, "mx '" + printable(value) + "' is not in A-label form (use xn-- labels)");
      }
      if (!is_a_label_domain(domain))
        return fail(line_no, "mx '" + printable(value) + "' is not a domain name or '*.' followed by one");
      p.mx.push_back(lower(value));
    } else {
      if (!is_policy_ext_value(value)) return fail(line_no, "invalid value for '" + std::string(key) + "'");
      ++p.extensions;
    }
  }
  if (!have_version) return fail(0, "version: STSv1 is missing");
  if (!have_mode) return fail(0, "mode is missing");
  if (!have_max_age) return fail(0, "max_age is missing");
  if (p.mode != StsMode::kNone && p.mx.empty())
    return fail(0, "mode " + std::string(to_string(p.mode)) + " needs at least one mx");
  return p;
}

std::optional<std::string> parse_sts_txt(const std::vector<std::string>& records, std::string* error) {
  if (error) error->clear();
  const std::string* found = nullptr;
  for (const std::string& r : records) {
    // "v=STSv1" must be followed by the end, a ';' or white space: "v=STSv10" is not ours.
    if (!r.starts_with("v=STSv1")) continue;
    if (r.size() > 7 && r[7] != ';' && !is_wsp(r[7])) continue;
    if (found) {
      if (error) *error = "more than one v=STSv1 TXT record";
      return std::nullopt;
    }
    found = &r;
  }
  if (!found) return std::nullopt;
  auto fail = [&](std::string msg) -> std::optional<std::string> {
    if (error) *error = "TXT record '" + printable(*found) + "': " + msg;
    return std::nullopt;
  };
  // sts-version 1*(*WSP ";" *WSP sts-field) [*WSP ";"] *WSP
  std::string_view rest = std::string_view(*found).substr(7);
  std::optional<std::string> id;
  while (true) {
    while (!rest.empty() && is_wsp(rest.front())) rest.remove_prefix(1);
    if (rest.empty()) break;
    if (rest.front() != ';') return fail("expected ';' between fields");
    rest.remove_prefix(1);
    while (!rest.empty() && is_wsp(rest.front())) rest.remove_prefix(1);
    if (rest.empty()) break;  // trailing ";"
    size_t end = 0;
    while (end < rest.size() && rest[end] != ';' && !is_wsp(rest[end])) ++end;
    const std::string_view field = rest.substr(0, end);
    rest.remove_prefix(end);
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) return fail("field '" + printable(field) + "' is not name=value");
    const std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
    if (name == "id") {
      if (id) return fail("id appears twice");
      if (value.empty() || value.size() > 32) return fail("id must be 1 to 32 letters and digits");
      for (char c : value) {
        if (!is_alnum(c)) return fail("id must be 1 to 32 letters and digits, found '" + printable(value) + "'");
      }
      id = std::string(value);
    } else {
      if (!is_ext_name(name)) return fail("invalid field name '" + printable(name) + "'");
      if (value.empty()) return fail("field '" + std::string(name) + "' has no value");
      for (char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x21 || u > 0x7e || c == '=') return fail("invalid value for '" + std::string(name) + "'");
      }
    }
  }
  if (!id) return fail("id is missing");
  return id;
}

bool sts_mx_matches(std::string_view pattern, std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (!pattern.empty() && pattern.back() == '.') pattern.remove_suffix(1);
  if (host.empty() || pattern.empty()) return false;
  auto ieq = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    }
    return true;
  };
  if (pattern.starts_with("*.")) {
    const std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (host.size() <= suffix.size()) return false;
    const std::string_view label = host.substr(0, host.size() - suffix.size());
    return ieq(host.substr(label.size()), suffix) && label.find('.') == std::string_view::npos;
  }
  return ieq(pattern, host);
}

bool sts_policy_allows(const StsPolicy& policy, std::string_view host) {
  for (const std::string& p : policy.mx) {
    if (sts_mx_matches(p, host)) return true;
  }
  return false;
}

}  // namespace mxedge::policy
