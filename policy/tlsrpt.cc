#include "policy/tlsrpt.h"

#include <cctype>

namespace mxedge::policy {
namespace {

constexpr std::string_view kVersion = "v=TLSRPTv1";

std::string_view trim_wsp(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

// RFC 8460 §3: tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool valid_ext_name(std::string_view n) {
  if (n.empty() || n.size() > 32 || !std::isalnum(static_cast<unsigned char>(n[0]))) return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

// tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
bool valid_ext_value(std::string_view v) {
  if (v.empty()) return false;
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e || u == 0x3b || u == 0x3d) return false;
  }
  return true;
}

bool valid_uri(std::string_view u, std::string* why) {
  for (char c : u) {
    const auto x = static_cast<unsigned char>(c);
    if (x <= 0x20 || x >= 0x7f || c == '!') {
      *why = "'" + std::string(u) + "' contains a character that must be percent-encoded";
      return false;
    }
  }
  if (starts_with_nocase(u, "mailto:")) {
    const std::string_view addr = u.substr(7);
    const size_t at = addr.find('@');
    if (at == 0 || at == std::string_view::npos || at + 1 >= addr.size()) {
      *why = "'" + std::string(u) + "' is not mailto:<local>@<domain>";
      return false;
    }
    return true;
  }
  if (starts_with_nocase(u, "https:")) {
    const std::string_view rest = u.substr(6);
    if (!rest.starts_with("//") || rest.size() < 3 || rest[2] == '/') {
      *why = "'" + std::string(u) + "' is not https://<host>/...";
      return false;
    }
    return true;
  }
  *why = "'" + std::string(u) + "' is neither a mailto: nor an https: URI";
  return false;
}

}  // namespace

bool is_tlsrpt_record(std::string_view txt) {
  if (!txt.starts_with(kVersion)) return false;
  const std::string_view rest = trim_wsp(txt.substr(kVersion.size()));
  return rest.empty() || rest.front() == ';';
}

std::optional<TlsRptRecord> parse_tlsrpt_record(std::string_view txt, std::string* error) {
  if (!is_tlsrpt_record(txt)) {
    *error = "does not begin with v=TLSRPTv1;";
    return std::nullopt;
  }
  TlsRptRecord out;
  bool have_rua = false;
  std::string_view rest = txt.substr(kVersion.size());
  size_t field_no = 1;
  while (!rest.empty()) {
    // field-delim = *WSP ";" *WSP
    rest = trim_wsp(rest);
    if (rest.empty()) break;
    if (rest.front() != ';') {
      *error = "field " + std::to_string(field_no) + " is not followed by ';'";
      return std::nullopt;
    }
    rest.remove_prefix(1);
    const size_t end = rest.find(';');
    const std::string_view field = trim_wsp(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    ++field_no;
    if (field.empty()) {
      if (rest.empty()) break;  // a trailing ";"
      *error = "empty field " + std::to_string(field_no);
      return std::nullopt;
    }
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) {
      *error = "field '" + std::string(field) + "' is not name=value";
      return std::nullopt;
    }
    const std::string_view name = field.substr(0, eq);
    const std::string_view value = field.substr(eq + 1);
    if (name == "rua") {
      if (have_rua) {
        *error = "more than one rua field";
        return std::nullopt;
      }
      have_rua = true;
      std::string_view list = value;
      while (true) {
        const size_t comma = list.find(',');
        const std::string_view uri = trim_wsp(list.substr(0, comma));
        std::string why;
        if (uri.empty()) {
          *error = "rua has an empty URI";
          return std::nullopt;
        }
        if (!valid_uri(uri, &why)) {
          *error = "rua: " + why;
          return std::nullopt;
        }
        out.rua.emplace_back(uri);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
    } else if (name == "v") {
      *error = "v= appears again after the version";
      return std::nullopt;
    } else if (valid_ext_name(name) && valid_ext_value(value)) {
      ++out.extensions;
    } else {
      *error = "field '" + std::string(field) + "' is not a valid extension";
      return std::nullopt;
    }
  }
  if (!have_rua) {
    *error = "no rua= field (where reports go)";
    return std::nullopt;
  }
  return out;
}

}  // namespace mxedge::policy
