#include "controlplane/tlsrpt/report.h"

#define ZLIB_CONST
#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <exception>
#include <new>
#include <nlohmann/json.hpp>
#include <utility>

namespace mxedge::tlsrpt {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

struct NamedResultType {
  ResultType type;
  std::string_view name;
};
constexpr std::array<NamedResultType, 11> kResultTypes = {{
    {ResultType::kStarttlsNotSupported, "starttls-not-supported"},
    {ResultType::kCertificateHostMismatch, "certificate-host-mismatch"},
    {ResultType::kCertificateExpired, "certificate-expired"},
    {ResultType::kCertificateNotTrusted, "certificate-not-trusted"},
    {ResultType::kValidationFailure, "validation-failure"},
    {ResultType::kTlsaInvalid, "tlsa-invalid"},
    {ResultType::kDnssecInvalid, "dnssec-invalid"},
    {ResultType::kDaneRequired, "dane-required"},
    {ResultType::kStsPolicyFetchError, "sts-policy-fetch-error"},
    {ResultType::kStsPolicyInvalid, "sts-policy-invalid"},
    {ResultType::kStsWebpkiInvalid, "sts-webpki-invalid"},
}};

// ---- dates ------------------------------------------------------------------------------------------

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, 1970-01-01 = day 0).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civil_from_days(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return kDays[m - 1];
}

// Reads exactly `n` digits at `*pos`.
bool digits(std::string_view s, size_t* pos, size_t n, unsigned* out) {
  if (*pos + n > s.size()) return false;
  unsigned v = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool expect(std::string_view s, size_t* pos, std::string_view any_of) {
  if (*pos >= s.size() || any_of.find(s[*pos]) == std::string_view::npos) return false;
  ++*pos;
  return true;
}

std::string two(unsigned v) {
  std::string s(2, '0');
  s[0] = static_cast<char>('0' + v / 10 % 10);
  s[1] = static_cast<char>('0' + v % 10);
  return s;
}

// ---- text helpers -----------------------------------------------------------------------------------

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// A header value from data we do not fully control: control characters (CR and LF above all) and
// non-ASCII bytes become spaces, so nothing can end a header or start another.
std::string header_safe(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) c = ' ';
  }
  return out;
}

// "domain" for the file name and headers: lower case, no trailing dot, header-safe.
std::string domain_text(std::string_view d) {
  std::string out = lower(header_safe(d));
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

// RFC 5322 atext plus '.', others replaced by '.', no leading, trailing or doubled dots: a dot-atom.
std::string dot_atom(std::string_view s) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  std::string out;
  for (char c : s) {
    const bool keep = is_alnum(c) || kSpecials.find(c) != std::string_view::npos;
    if (keep) {
      out.push_back(c);
    } else if (!out.empty() && out.back() != '.') {
      out.push_back('.');
    }
  }
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

// "Name: value" folded before spaces of the value (or before the value itself: every field written
// here allows FWS there) so that lines stay within 78 characters where a word fits on a line;
// unfolding gives "Name: value" back unchanged.
std::string header(std::string_view name, std::string_view value) {
  constexpr size_t kMax = 78;
  std::string out(name);
  out += ':';
  size_t line_start = 0;
  size_t pos = 0;
  while (true) {
    const size_t sp = value.find(' ', pos);
    const std::string_view word = value.substr(pos, sp == std::string_view::npos ? std::string_view::npos : sp - pos);
    const size_t line_len = out.size() - line_start;
    const bool line_has_text = line_len > (line_start == 0 ? name.size() + 1 : 0);
    if ((line_has_text || line_start == 0) && !word.empty() && line_len + 1 + word.size() > kMax) {
      out += "\r\n";
      line_start = out.size();
    }
    out += ' ';
    out += word;
    if (sp == std::string_view::npos) break;
    pos = sp + 1;
  }
  out += "\r\n";
  return out;
}

std::string rfc5322_date(int64_t unix_seconds) {
  static constexpr const char* kDays[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};  // day 0 = Thursday
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int64_t days = unix_seconds / 86400;
  int64_t secs = unix_seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  int64_t y = 0;
  unsigned m = 0, d = 0;
  civil_from_days(days, &y, &m, &d);
  const int64_t wd = ((days % 7) + 7) % 7;
  const auto s = static_cast<unsigned>(secs);
  return std::string(kDays[wd]) + ", " + two(d) + " " + kMonths[m - 1] + " " + std::to_string(y) + " " + two(s / 3600) +
         ":" + two(s / 60 % 60) + ":" + two(s % 60) + " +0000";
}

// FNV-1a, for a boundary that differs between reports (any value works: see mail_message).
uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex64(uint64_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kHex[v & 0xf];
    v >>= 4;
  }
  return out;
}

// ---- JSON reading -----------------------------------------------------------------------------------

std::string join(const std::string& base, std::string_view key) {
  return base.empty() ? std::string(key) : base + "." + std::string(key);
}

std::string index_path(const std::string& base, size_t i) { return base + "[" + std::to_string(i) + "]"; }

// Error text fit for a log line: nlohmann's messages quote the input they stopped at.
std::string printable(std::string_view s) {
  std::string out(s.substr(0, 300));
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) c = '?';
  }
  return out;
}

class Reader {
 public:
  explicit Reader(std::string* error) : error_(error) {}

  bool fail(const std::string& path, std::string_view why) {
    if (error_ != nullptr) *error_ = path + ": " + std::string(why);
    return false;
  }

  // Finds `key` in the object `obj`; `*found` is null when it is absent. Fails when required and absent.
  bool member(const json& obj, const std::string& base, std::string_view key, bool required, const json** found) {
    *found = nullptr;
    const auto it = obj.find(key);
    if (it == obj.end()) return required ? fail(join(base, key), "missing") : true;
    *found = &*it;
    return true;
  }

  bool string(const json& obj, const std::string& base, std::string_view key, bool required, std::string* out) {
    const json* v = nullptr;
    if (!member(obj, base, key, required, &v)) return false;
    if (v == nullptr) return true;
    if (!v->is_string()) return fail(join(base, key), "not a string");
    *out = v->get_ref<const std::string&>();
    return true;
  }

  bool nonempty_string(const json& obj, const std::string& base, std::string_view key, std::string* out) {
    if (!string(obj, base, key, true, out)) return false;
    if (out->empty()) return fail(join(base, key), "empty");
    return true;
  }

  bool count(const json& obj, const std::string& base, std::string_view key, uint64_t* out) {
    const json* v = nullptr;
    if (!member(obj, base, key, true, &v)) return false;
    if (v == nullptr || !v->is_number_unsigned()) return fail(join(base, key), "not a non-negative integer");
    *out = v->get<uint64_t>();
    return true;
  }

  bool string_array(const json& obj, const std::string& base, std::string_view key, std::vector<std::string>* out) {
    const json* v = nullptr;
    if (!member(obj, base, key, false, &v)) return false;
    if (v == nullptr) return true;
    const std::string path = join(base, key);
    if (!v->is_array()) return fail(path, "not an array of strings");
    for (size_t i = 0; i < v->size(); ++i) {
      const json& e = (*v)[i];
      if (!e.is_string()) return fail(index_path(path, i), "not a string");
      out->push_back(e.get_ref<const std::string&>());
    }
    return true;
  }

  bool object(const json& obj, const std::string& base, std::string_view key, const json** out) {
    if (!member(obj, base, key, true, out)) return false;
    if (*out == nullptr || !(*out)->is_object()) return fail(join(base, key), "not an object");
    return true;
  }

  bool datetime(const json& obj, const std::string& base, std::string_view key, std::string* out, int64_t* unix) {
    if (!string(obj, base, key, true, out)) return false;
    const auto t = parse_datetime(*out);
    if (!t) return fail(join(base, key), "not an RFC 3339 date-time");
    *unix = *t;
    return true;
  }

  bool failure_detail(const json& v, const std::string& path, FailureDetail* fd) {
    if (!v.is_object()) return fail(path, "not an object");
    return nonempty_string(v, path, "result-type", &fd->result_type) &&
           string(v, path, "sending-mta-ip", false, &fd->sending_mta_ip) &&
           string(v, path, "receiving-mx-hostname", false, &fd->receiving_mx_hostname) &&
           string(v, path, "receiving-mx-helo", false, &fd->receiving_mx_helo) &&
           string(v, path, "receiving-ip", false, &fd->receiving_ip) &&
           count(v, path, "failed-session-count", &fd->failed_session_count) &&
           string(v, path, "additional-information", false, &fd->additional_information) &&
           string(v, path, "failure-reason-code", false, &fd->failure_reason_code);
  }

  bool policy_report(const json& v, const std::string& path, PolicyReport* pr) {
    if (!v.is_object()) return fail(path, "not an object");
    const json* policy = nullptr;
    if (!object(v, path, "policy", &policy)) return false;
    const std::string ppath = join(path, "policy");
    std::string type;
    if (!string(*policy, ppath, "policy-type", true, &type)) return false;
    const auto pt = parse_policy_type(type);
    if (!pt) return fail(join(ppath, "policy-type"), "not one of sts, tlsa, no-policy-found");
    pr->policy.policy_type = *pt;
    if (!string_array(*policy, ppath, "policy-string", &pr->policy.policy_string) ||
        !nonempty_string(*policy, ppath, "policy-domain", &pr->policy.policy_domain) ||
        !string_array(*policy, ppath, "mx-host", &pr->policy.mx_host)) {
      return false;
    }
    const json* summary = nullptr;
    if (!object(v, path, "summary", &summary)) return false;
    const std::string spath = join(path, "summary");
    if (!count(*summary, spath, "total-successful-session-count", &pr->summary.total_successful_session_count) ||
        !count(*summary, spath, "total-failure-session-count", &pr->summary.total_failure_session_count)) {
      return false;
    }
    const json* details = nullptr;
    if (!member(v, path, "failure-details", false, &details)) return false;
    if (details == nullptr) return true;
    const std::string dpath = join(path, "failure-details");
    if (!details->is_array()) return fail(dpath, "not an array");
    pr->failure_details.resize(details->size());
    for (size_t i = 0; i < details->size(); ++i)
      if (!failure_detail((*details)[i], index_path(dpath, i), &pr->failure_details[i])) return false;
    return true;
  }

  bool report(const json& v, Report* r) {
    if (!v.is_object()) return fail("report", "not a JSON object");
    if (!string(v, "", "organization-name", true, &r->organization_name)) return false;
    const json* range = nullptr;
    if (!object(v, "", "date-range", &range)) return false;
    int64_t start = 0, end = 0;
    if (!datetime(*range, "date-range", "start-datetime", &r->date_range.start_datetime, &start) ||
        !datetime(*range, "date-range", "end-datetime", &r->date_range.end_datetime, &end)) {
      return false;
    }
    if (end < start) return fail("date-range.end-datetime", "before start-datetime");
    if (!string(v, "", "contact-info", true, &r->contact_info) || !nonempty_string(v, "", "report-id", &r->report_id))
      return false;
    const json* policies = nullptr;
    if (!member(v, "", "policies", true, &policies)) return false;
    if (policies == nullptr || !policies->is_array()) return fail("policies", "not an array");
    r->policies.resize(policies->size());
    for (size_t i = 0; i < policies->size(); ++i)
      if (!policy_report((*policies)[i], index_path("policies", i), &r->policies[i])) return false;
    return true;
  }

 private:
  std::string* error_;
};

// ---- zlib -------------------------------------------------------------------------------------------

constexpr size_t kChunk = size_t{64} * 1024;
constexpr size_t kMaxIn = UINT_MAX;  // z_stream::avail_in is a uInt

void feed(z_stream* zs, std::string_view data, size_t* pos) {
  const size_t n = std::min(data.size() - *pos, kMaxIn);
  zs->next_in = reinterpret_cast<const Bytef*>(data.data() + *pos);
  zs->avail_in = static_cast<uInt>(n);
  *pos += n;
}

}  // namespace

std::string_view to_string(ResultType type) {
  for (const auto& r : kResultTypes)
    if (r.type == type) return r.name;
  return "validation-failure";
}

std::optional<ResultType> parse_result_type(std::string_view text) {
  for (const auto& r : kResultTypes)
    if (r.name == text) return r.type;
  return std::nullopt;
}

std::string_view to_string(PolicyType type) {
  switch (type) {
    case PolicyType::kSts:
      return "sts";
    case PolicyType::kTlsa:
      return "tlsa";
    case PolicyType::kNoPolicyFound:
      break;
  }
  return "no-policy-found";
}

std::optional<PolicyType> parse_policy_type(std::string_view text) {
  if (text == "sts") return PolicyType::kSts;
  if (text == "tlsa") return PolicyType::kTlsa;
  if (text == "no-policy-found") return PolicyType::kNoPolicyFound;
  return std::nullopt;
}

std::optional<int64_t> parse_datetime(std::string_view s) {
  size_t pos = 0;
  unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!digits(s, &pos, 4, &y) || !expect(s, &pos, "-") || !digits(s, &pos, 2, &mo) || !expect(s, &pos, "-") ||
      !digits(s, &pos, 2, &d) || !expect(s, &pos, "Tt ") || !digits(s, &pos, 2, &h) || !expect(s, &pos, ":") ||
      !digits(s, &pos, 2, &mi) || !expect(s, &pos, ":") || !digits(s, &pos, 2, &sec)) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    if (pos == start) return std::nullopt;
  }
  int64_t offset = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    const bool minus = s[pos] == '-';
    ++pos;
    unsigned oh = 0, om = 0;
    if (!digits(s, &pos, 2, &oh) || !expect(s, &pos, ":") || !digits(s, &pos, 2, &om) || oh > 23 || om > 59)
      return std::nullopt;
    offset = (minus ? -1 : 1) * static_cast<int64_t>(oh * 3600 + om * 60);
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  if (sec == 60) sec = 59;
  return days_from_civil(y, mo, d) * 86400 + int64_t{h} * 3600 + int64_t{mi} * 60 + sec - offset;
}

std::string format_datetime(int64_t unix_seconds) {
  int64_t days = unix_seconds / 86400;
  int64_t secs = unix_seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  int64_t y = 0;
  unsigned m = 0, d = 0;
  civil_from_days(days, &y, &m, &d);
  std::string year = std::to_string(y < 0 ? -y : y);
  if (year.size() < 4) year.insert(0, 4 - year.size(), '0');
  if (y < 0) year.insert(0, 1, '-');
  const auto s = static_cast<unsigned>(secs);
  return year + "-" + two(m) + "-" + two(d) + "T" + two(s / 3600) + ":" + two(s / 60 % 60) + ":" + two(s % 60) + "Z";
}

std::string to_json(const Report& report, int indent) {
  ordered_json policies = ordered_json::array();
  for (const PolicyReport& pr : report.policies) {
    ordered_json policy = ordered_json::object();
    policy["policy-type"] = std::string(to_string(pr.policy.policy_type));
    if (!pr.policy.policy_string.empty() || pr.policy.policy_type != PolicyType::kNoPolicyFound)
      policy["policy-string"] = pr.policy.policy_string;
    policy["policy-domain"] = pr.policy.policy_domain;
    if (!pr.policy.mx_host.empty()) policy["mx-host"] = pr.policy.mx_host;

    ordered_json details = ordered_json::array();
    for (const FailureDetail& fd : pr.failure_details) {
      ordered_json d = ordered_json::object();
      d["result-type"] = fd.result_type;
      const auto opt = [&d](const char* key, const std::string& value) {
        if (!value.empty()) d[key] = value;
      };
      opt("sending-mta-ip", fd.sending_mta_ip);
      opt("receiving-mx-hostname", fd.receiving_mx_hostname);
      opt("receiving-mx-helo", fd.receiving_mx_helo);
      opt("receiving-ip", fd.receiving_ip);
      d["failed-session-count"] = fd.failed_session_count;
      opt("additional-information", fd.additional_information);
      opt("failure-reason-code", fd.failure_reason_code);
      details.push_back(std::move(d));
    }
    ordered_json entry = ordered_json::object();
    entry["policy"] = std::move(policy);
    entry["summary"] = ordered_json{
        {"total-successful-session-count", pr.summary.total_successful_session_count},
        {"total-failure-session-count", pr.summary.total_failure_session_count},
    };
    entry["failure-details"] = std::move(details);
    policies.push_back(std::move(entry));
  }
  ordered_json j = ordered_json::object();
  j["organization-name"] = report.organization_name;
  j["date-range"] = ordered_json{
      {"start-datetime", report.date_range.start_datetime},
      {"end-datetime", report.date_range.end_datetime},
  };
  j["contact-info"] = report.contact_info;
  j["report-id"] = report.report_id;
  j["policies"] = std::move(policies);
  return j.dump(indent < 0 ? -1 : indent, ' ', false, ordered_json::error_handler_t::replace);
}

std::optional<Report> parse_json(std::string_view text, std::string* error) {
  try {
    json v;
    try {
      v = json::parse(text.begin(), text.end());
    } catch (const json::parse_error& e) {
      if (error != nullptr) *error = "not JSON: " + printable(e.what());
      return std::nullopt;
    }
    Report r;
    Reader reader(error);
    if (!reader.report(v, &r)) return std::nullopt;
    return r;
  } catch (const std::exception& e) {
    if (error != nullptr) *error = std::string("report rejected: ") + printable(e.what());
  } catch (...) {
    if (error != nullptr) *error = "report rejected: unknown error";
  }
  return std::nullopt;
}

std::string gzip(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::bad_alloc();
  struct End {
    z_stream* zs;
    ~End() { deflateEnd(zs); }
  } end{&zs};
  std::string out;
  size_t pos = 0;
  std::array<unsigned char, kChunk> buf{};
  int rc = Z_OK;
  do {
    if (zs.avail_in == 0 && pos < data.size()) feed(&zs, data, &pos);
    const int flush = (zs.avail_in == 0 && pos == data.size()) ? Z_FINISH : Z_NO_FLUSH;
    zs.next_out = buf.data();
    zs.avail_out = static_cast<uInt>(buf.size());
    rc = deflate(&zs, flush);
    if (rc == Z_STREAM_ERROR) throw std::bad_alloc();  // cannot happen with a valid stream
    out.append(reinterpret_cast<const char*>(buf.data()), buf.size() - zs.avail_out);
  } while (rc != Z_STREAM_END);
  return out;
}

std::optional<std::string> gunzip(std::string_view data, size_t max_out, std::string* error) {
  const auto fail = [error](std::string why) -> std::optional<std::string> {
    if (error != nullptr) *error = std::move(why);
    return std::nullopt;
  };
  if (data.size() < 2 || static_cast<unsigned char>(data[0]) != 0x1f || static_cast<unsigned char>(data[1]) != 0x8b)
    return fail("not gzip data (no gzip header)");
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return fail("zlib: cannot initialise");
  struct End {
    z_stream* zs;
    ~End() { inflateEnd(zs); }
  } end{&zs};
  std::string out;
  size_t pos = 0;
  std::array<unsigned char, kChunk> buf{};
  while (true) {
    if (zs.avail_in == 0 && pos < data.size()) feed(&zs, data, &pos);
    zs.next_out = buf.data();
    zs.avail_out = static_cast<uInt>(buf.size());
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const size_t have = buf.size() - zs.avail_out;
    if (have > max_out - out.size()) return fail("decompressed size exceeds " + std::to_string(max_out) + " bytes");
    out.append(reinterpret_cast<const char*>(buf.data()), have);
    if (rc == Z_STREAM_END) {
      const size_t rest = zs.avail_in + (data.size() - pos);
      if (rest == 0) return out;
      const size_t at = data.size() - rest;
      if (rest < 2 || static_cast<unsigned char>(data[at]) != 0x1f || static_cast<unsigned char>(data[at + 1]) != 0x8b)
        return fail("trailing data after the gzip stream");
      if (inflateReset(&zs) != Z_OK) return fail("zlib: cannot reset");
      continue;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && pos == data.size()) return fail("truncated gzip data");
    if (rc == Z_BUF_ERROR) continue;
    if (rc == Z_MEM_ERROR) return fail("zlib: out of memory");
    return fail(std::string("corrupt gzip data: ") + (zs.msg != nullptr ? zs.msg : "inflate error"));
  }
}

std::string report_filename(std::string_view submitter, std::string_view policy_domain, int64_t begin_unix,
                            int64_t end_unix, std::string_view unique_id) {
  std::string id;
  for (char c : unique_id)
    if (is_alnum(c)) id.push_back(c);
  std::string name = domain_text(submitter) + "!" + domain_text(policy_domain) + "!" + std::to_string(begin_unix) +
                     "!" + std::to_string(end_unix);
  if (!id.empty()) name += "!" + id;
  return name + ".json.gz";
}

std::string base64_encode(std::string_view data, size_t line_length) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string flat;
  flat.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  const auto byte = [&data](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(data[k])); };
  for (; i + 3 <= data.size(); i += 3) {
    const uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    flat += kAlphabet[v >> 18 & 63];
    flat += kAlphabet[v >> 12 & 63];
    flat += kAlphabet[v >> 6 & 63];
    flat += kAlphabet[v & 63];
  }
  if (data.size() - i == 1) {
    const uint32_t v = byte(i) << 16;
    flat += kAlphabet[v >> 18 & 63];
    flat += kAlphabet[v >> 12 & 63];
    flat += "==";
  } else if (data.size() - i == 2) {
    const uint32_t v = byte(i) << 16 | byte(i + 1) << 8;
    flat += kAlphabet[v >> 18 & 63];
    flat += kAlphabet[v >> 12 & 63];
    flat += kAlphabet[v >> 6 & 63];
    flat += '=';
  }
  if (line_length == 0) return flat;
  std::string out;
  out.reserve(flat.size() + flat.size() / line_length * 2 + 2);
  for (size_t k = 0; k < flat.size(); k += line_length) {
    out.append(flat, k, line_length);
    out += "\r\n";
  }
  return out;
}

std::string mail_message(const Report& report, const MailOptions& options) {
  const std::string policy_domain =
      report.policies.empty() ? std::string() : domain_text(report.policies[0].policy.policy_domain);
  const std::string submitter = domain_text(options.submitter);

  // Report-ID as a msg-id (RFC 5322 §3.6.4): "<left@right>".
  std::string id_left = report.report_id;
  std::string id_right = submitter;
  if (const size_t at = report.report_id.rfind('@'); at != std::string::npos) {
    id_left = report.report_id.substr(0, at);
    id_right = report.report_id.substr(at + 1);
  }
  id_left = dot_atom(id_left);
  id_right = dot_atom(id_right);
  if (id_left.empty()) id_left = "report";
  if (id_right.empty()) id_right = "invalid";

  const int64_t begin = parse_datetime(report.date_range.start_datetime).value_or(0);
  const int64_t end = parse_datetime(report.date_range.end_datetime).value_or(0);
  const std::string filename = report_filename(submitter, policy_domain, begin, end, options.unique_id);

  // The boundary contains "=_", which base64 text and the fixed text part never contain.
  const std::string boundary = "----=_tlsrpt_" + hex64(fnv1a(report.report_id + filename));
  std::string msg_domain = dot_atom(options.message_id_domain);
  if (msg_domain.empty()) msg_domain = id_right;

  std::string m;
  m += header("From", header_safe(options.from));
  m += header("To", header_safe(options.to));
  m += header("Date", rfc5322_date(options.date));
  m += header("Message-ID", "<tlsrpt." + id_left + "." + std::to_string(options.date) + "@" + msg_domain + ">");
  m += header("Subject", "Report Domain: " + policy_domain + " Submitter: " + submitter + " Report-ID: <" + id_left +
                             "@" + id_right + ">");
  m += header("TLS-Report-Domain", policy_domain);
  m += header("TLS-Report-Submitter", submitter);
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n boundary=\"" + boundary + "\"\r\n";
  m += "\r\n";
  m += "This is a multipart message in MIME format.\r\n";
  m += "\r\n--" + boundary + "\r\n";
  m += "Content-Type: text/plain; charset=\"us-ascii\"\r\n";
  m += "Content-Transfer-Encoding: 7bit\r\n";
  m += "\r\n";
  m += "This is an aggregate TLS report from " + submitter + "\r\n";
  m += "for the policy domain " + policy_domain + ",\r\n";
  m += "from " + header_safe(report.date_range.start_datetime) + " to " + header_safe(report.date_range.end_datetime) +
       " (RFC 8460).\r\n";
  m += "\r\n--" + boundary + "\r\n";
  m += "Content-Type: application/tlsrpt+gzip\r\n";
  m += "Content-Transfer-Encoding: base64\r\n";
  m += "Content-Disposition: attachment;\r\n filename=\"" + filename + "\"\r\n";
  m += "\r\n";
  m += base64_encode(gzip(to_json(report)), 76);
  m += "\r\n--" + boundary + "--\r\n";
  return m;
}

std::string https_content_type() { return "application/tlsrpt+gzip"; }

std::string https_body(const Report& report) { return gzip(to_json(report)); }

}  // namespace mxedge::tlsrpt
