#include "controlplane/ctl/offline/sts_check.h"

#include <cctype>
#include <sstream>

#include "controlplane/ctl/offline/x509_util.h"
#include "policy/mta_sts.h"

namespace mxedge::ctl::offline {
namespace {

// Why `pattern` would be rejected in a policy file's mx line (the same rules as parse_sts_policy);
// "" when it is valid.
std::string pattern_problem(const std::string& pattern) {
  const bool wildcard = pattern.starts_with("*.");
  const std::string domain = wildcard ? pattern.substr(2) : pattern;
  for (char c : domain) {
    if (static_cast<unsigned char>(c) >= 0x80) return "not in A-label form (use xn-- labels)";
  }
  if (!policy::is_a_label_domain(domain)) return "not a domain name or '*.' followed by one";
  return {};
}

std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out;
}

}  // namespace

Report check_sts_policy_text(const std::string& body, const std::string& what) {
  Report rep;
  policy::StsError err;
  const auto p = policy::parse_sts_policy(body, &err);
  rep.json["file"] = what;
  if (!p) {
    rep.verdict = Verdict::kNegative;
    rep.json["valid"] = false;
    rep.json["error"] = {{"line", err.line}, {"message", err.message}};
    rep.text = "invalid: " + err.to_string() + "\n";
    return rep;
  }
  rep.json["valid"] = true;
  rep.json["policy"] = {{"version", "STSv1"},
                        {"mode", std::string(policy::to_string(p->mode))},
                        {"max_age", p->max_age},
                        {"mx", p->mx},
                        {"extensions", p->extensions}};
  std::ostringstream o;
  o << what << ": valid\n";
  o << "  version: STSv1\n";
  o << "  mode: " << policy::to_string(p->mode) << "\n";
  o << "  max_age: " << p->max_age << " (" << p->max_age / 86400 << "d " << (p->max_age % 86400) / 3600 << "h)\n";
  for (const auto& mx : p->mx) o << "  mx: " << mx << "\n";
  if (p->mx.empty()) o << "  mx: (none)\n";
  o << "  ignored extension fields: " << p->extensions << "\n";
  rep.text = o.str();
  return rep;
}

Report run_sts_parse(const std::string& path) {
  std::string body, err;
  if (!read_file(path, 1u << 20, &body, &err)) return usage_error(err);
  return check_sts_policy_text(body, path);
}

Report run_sts_match(const std::string& pattern, const std::string& host) {
  Report rep;
  rep.json = {{"pattern", pattern}, {"host", host}};
  std::string reason;
  if (const std::string prob = pattern_problem(pattern); !prob.empty()) {
    reason = "invalid pattern '" + printable(pattern) + "': " + prob;
  } else {
    std::string h = host;
    if (!h.empty() && h.back() == '.') h.pop_back();
    if (!policy::is_a_label_domain(h)) reason = "host '" + printable(host) + "' is not a domain name in A-label form";
  }
  const bool match = reason.empty() && policy::sts_mx_matches(pattern, host);
  if (!match && reason.empty() && pattern.starts_with("*.")) {
    std::string h = host;
    if (!h.empty() && h.back() == '.') h.pop_back();
    std::string suffix = pattern.substr(1);  // ".example.com"
    for (char& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (h == suffix.substr(1) || (h.size() > suffix.size() && h.ends_with(suffix)))
      reason = "'*.' matches exactly one more leftmost label";
  }
  rep.verdict = match ? Verdict::kOk : Verdict::kNegative;
  rep.json["match"] = match;
  if (!reason.empty()) rep.json["reason"] = reason;
  rep.text = std::string(match ? "match" : "no match") + (reason.empty() ? "" : ": " + reason) + "\n";
  return rep;
}

Report run_sts_txt(const std::vector<std::string>& records) {
  Report rep;
  std::string err;
  const auto id = policy::parse_sts_txt(records, &err);
  if (id) {
    rep.json = {{"valid", true}, {"id", *id}};
    rep.text = "valid: id=" + *id + "\n";
    return rep;
  }
  if (err.empty()) err = "not an MTA-STS record (it must start with v=STSv1)";
  rep.verdict = Verdict::kNegative;
  rep.json = {{"valid", false}, {"id", nullptr}, {"error", err}};
  rep.text = "invalid: " + err + "\n";
  return rep;
}

}  // namespace mxedge::ctl::offline
