#include "controlplane/tlsrpt/sender.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "controlplane/resolver/resolver.h"
#include "controlplane/resolver/resolver_config.h"
#include "policy/duration.h"
#include "policy/log.h"
#include "policy/mgmt_socket.h"
#include "policy/tlsrpt.h"

namespace mxedge::tlsrpt {

namespace v1 = mxedge::mgmt::v1;

namespace {

constexpr int64_t kDay = 86400;
// Days older than this are not reported any more when the gateway was down over them (the outcome
// store keeps 14; a report a week late helps nobody).
constexpr int64_t kCatchUpDays = 3;

int64_t utc_day(int64_t t) { return t - ((t % kDay) + kDay) % kDay; }

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

bool write_atomic(const std::string& path, std::string_view data, std::string* error) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    *error = "cannot create " + tmp + ": " + std::strerror(errno);
    return false;
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = "cannot write " + tmp + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    *error = "cannot sync " + tmp + ": " + std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return false;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = "cannot rename " + tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The file-name-safe form of a domain (domains are [a-z0-9.-] already; anything else is dropped).
std::string safe(const std::string& domain) {
  std::string out;
  for (char c : domain)
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') out += c;
  return out.empty() ? "_" : out;
}

std::string join_lines(const google::protobuf::RepeatedPtrField<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

}  // namespace

// ---- aggregation -----------------------------------------------------------------------------------

std::vector<Report> aggregate(int64_t day, const std::vector<v1::TlsOutcome>& outcomes, const ReportIdentity& who) {
  day = utc_day(day);
  // domain -> (type, id, strings, mx) -> PolicyReport
  using PolicyKey = std::tuple<std::string, std::string, std::string, std::string>;
  std::map<std::string, std::map<PolicyKey, PolicyReport>> by_domain;
  for (const auto& o : outcomes) {
    if (utc_day(o.day()) != day || o.policy_domain().empty()) continue;
    const auto type = parse_policy_type(o.policy_type());
    if (!type) continue;  // a row written by a newer data plane: nothing we can say about it
    PolicyKey key{o.policy_type(), o.policy_id(), join_lines(o.policy_strings()), join_lines(o.mx_hosts())};
    PolicyReport& pr = by_domain[lower(o.policy_domain())][key];
    if (pr.policy.policy_domain.empty()) {
      pr.policy.policy_type = *type;
      pr.policy.policy_domain = lower(o.policy_domain());
      if (*type != PolicyType::kNoPolicyFound) pr.policy.policy_string.assign(o.policy_strings().begin(), o.policy_strings().end());
      pr.policy.mx_host.assign(o.mx_hosts().begin(), o.mx_hosts().end());
    }
    if (o.result_type().empty()) {
      pr.summary.total_successful_session_count += o.sessions();
      continue;
    }
    pr.summary.total_failure_session_count += o.sessions();
    FailureDetail f;
    f.result_type = o.result_type();
    f.sending_mta_ip = o.sending_mta_ip();
    f.receiving_mx_hostname = o.receiving_mx_hostname();
    f.receiving_ip = o.receiving_ip();
    f.failure_reason_code = o.failure_reason_code();
    auto same = std::find_if(pr.failure_details.begin(), pr.failure_details.end(), [&](const FailureDetail& d) {
      return d.result_type == f.result_type && d.sending_mta_ip == f.sending_mta_ip && d.receiving_mx_hostname == f.receiving_mx_hostname &&
             d.receiving_ip == f.receiving_ip && d.failure_reason_code == f.failure_reason_code;
    });
    if (same != pr.failure_details.end()) {
      same->failed_session_count += o.sessions();
    } else {
      f.failed_session_count = o.sessions();
      pr.failure_details.push_back(std::move(f));
    }
  }
  std::vector<Report> reports;
  for (auto& [domain, policies] : by_domain) {
    Report r;
    r.organization_name = who.organization_name;
    r.date_range.start_datetime = format_datetime(day);
    r.date_range.end_datetime = format_datetime(day + kDay - 1);
    r.contact_info = who.contact_info;
    r.report_id = r.date_range.start_datetime + "_" + domain;
    for (auto& [key, pr] : policies) {
      std::sort(pr.failure_details.begin(), pr.failure_details.end(), [](const FailureDetail& a, const FailureDetail& b) {
        return std::tie(a.result_type, a.receiving_mx_hostname, a.receiving_ip, a.sending_mta_ip, a.failure_reason_code) <
               std::tie(b.result_type, b.receiving_mx_hostname, b.receiving_ip, b.sending_mta_ip, b.failure_reason_code);
      });
      r.policies.push_back(std::move(pr));
    }
    reports.push_back(std::move(r));
  }
  return reports;
}

RuaLookup rua_from_txt(const std::vector<std::string>& txt) {
  RuaLookup out;
  std::vector<std::string> records;
  for (const auto& t : txt)
    if (policy::is_tlsrpt_record(t)) records.push_back(t);
  if (records.empty()) {
    out.kind = RuaLookup::Kind::kNone;
    out.detail = "no v=TLSRPTv1 record";
    return out;
  }
  if (records.size() > 1) {
    out.kind = RuaLookup::Kind::kNone;
    out.detail = std::to_string(records.size()) + " v=TLSRPTv1 records (there must be exactly one)";
    return out;
  }
  std::string error;
  auto rec = policy::parse_tlsrpt_record(records[0], &error);
  if (!rec) {
    out.kind = RuaLookup::Kind::kNone;
    out.detail = "invalid TLS-RPT record: " + error;
    return out;
  }
  out.kind = RuaLookup::Kind::kFound;
  out.rua = rec->rua;
  return out;
}

std::string mailto_address(const std::string& uri) {
  if (uri.size() < 7 || lower(uri.substr(0, 7)) != "mailto:") return {};
  std::string rest = uri.substr(7);
  if (size_t q = rest.find('?'); q != std::string::npos) rest.resize(q);
  // Several addresses in one mailto: URI are comma-separated; the record's own list is split by the
  // record parser, so a comma here would be a percent-encoded one inside the address: take the first.
  std::string out;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == '%' && i + 2 < rest.size() && std::isxdigit(static_cast<unsigned char>(rest[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(rest[i + 2]))) {
      out += static_cast<char>(std::stoi(rest.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += rest[i];
    }
  }
  const size_t at = out.rfind('@');
  if (at == std::string::npos || at == 0 || at + 1 == out.size() || out.find_first_of("<>,;:\\\"()[]") != std::string::npos)
    return {};
  // It becomes an SMTP envelope recipient: no white space, controls or DEL (%00, %0D%0A...).
  for (unsigned char c : out)
    if (c <= 0x20 || c == 0x7f) return {};
  return out;
}

// ---- job files -------------------------------------------------------------------------------------
// A line-based text file: "key value" lines, then one "target <done 0|1> <uri> <result...>" per rua.
// URIs have no white space (the record parser refuses it); results are single-line.

std::string format_job(const PendingReport& p) {
  std::ostringstream s;
  s << "day " << p.day << "\n"
    << "domain " << p.domain << "\n"
    << "report_id " << p.report_id << "\n"
    << "due " << p.due << "\n"
    << "next_attempt " << p.next_attempt << "\n"
    << "attempts " << p.attempts << "\n"
    << "looked_up " << (p.looked_up ? 1 : 0) << "\n"
    << "successes " << p.successes << "\n"
    << "failures " << p.failures << "\n";
  auto one_line = [](std::string t) {
    std::replace(t.begin(), t.end(), '\n', ' ');
    std::replace(t.begin(), t.end(), '\r', ' ');
    return t;
  };
  s << "last_error " << one_line(p.last_error) << "\n";
  for (const auto& t : p.targets) s << "target " << (t.done ? 1 : 0) << " " << t.uri << " " << one_line(t.result) << "\n";
  return s.str();
}

std::optional<PendingReport> parse_job(const std::string& text) {
  PendingReport p;
  std::istringstream in(text);
  std::string line;
  bool have_day = false, have_domain = false;
  try {
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const size_t sp = line.find(' ');
      const std::string key = line.substr(0, sp);
      const std::string value = sp == std::string::npos ? std::string() : line.substr(sp + 1);
      if (key == "day") p.day = std::stoll(value), have_day = true;
      else if (key == "domain") p.domain = value, have_domain = !value.empty();
      else if (key == "report_id") p.report_id = value;
      else if (key == "due") p.due = std::stoll(value);
      else if (key == "next_attempt") p.next_attempt = std::stoll(value);
      else if (key == "attempts") p.attempts = static_cast<uint32_t>(std::stoul(value));
      else if (key == "looked_up") p.looked_up = value == "1";
      else if (key == "successes") p.successes = std::stoull(value);
      else if (key == "failures") p.failures = std::stoull(value);
      else if (key == "last_error") p.last_error = value;
      else if (key == "target") {
        PendingReport::Target t;
        if (value.size() < 3 || (value[0] != '0' && value[0] != '1') || value[1] != ' ') return std::nullopt;
        t.done = value[0] == '1';
        const std::string rest = value.substr(2);
        const size_t sp2 = rest.find(' ');
        t.uri = rest.substr(0, sp2);
        t.result = sp2 == std::string::npos ? std::string() : rest.substr(sp2 + 1);
        if (t.uri.empty()) return std::nullopt;
        p.targets.push_back(std::move(t));
      }
      // unknown keys: written by a newer version; ignored
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!have_day || !have_domain) return std::nullopt;
  return p;
}

// ---- the sender ------------------------------------------------------------------------------------

std::unique_ptr<ReportSender> ReportSender::open(const config::v1::Config& config, SenderDeps deps, std::string* error) {
  const std::string dir = config.tlsrpt().reports().state_dir();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    *error = "cannot create tlsrpt.reports.state_dir " + dir + ": " + (ec ? ec.message() : "not a directory");
    return nullptr;
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    *error = "tlsrpt.reports.state_dir " + dir + " is not writable: " + std::strerror(errno);
    return nullptr;
  }
  std::unique_ptr<ReportSender> s(new ReportSender(dir, std::move(deps)));
  s->set_config(config);
  return s;
}

ReportSender::~ReportSender() { stop(); }

void ReportSender::set_config(const config::v1::Config& config) {
  std::lock_guard lock(mu_);
  config_ = config.tlsrpt().reports();
}

void ReportSender::start() {
  thread_ = std::thread([this] { run(); });
}

void ReportSender::stop() {
  {
    std::lock_guard lock(wait_mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ReportSender::run() {
  log::info("tlsrpt.sender_started").kv("state_dir", dir_);
  while (true) {
    tick();
    // Sleep until the next report is due (at most a minute: a new day, a reload, a clock change).
    int64_t now = deps_.now();
    int64_t wait_s = 60;
    for (const auto& p : pending()) wait_s = std::min(wait_s, std::max<int64_t>(1, std::max(p.due, p.next_attempt) - now));
    wait_s = std::min(wait_s, std::max<int64_t>(1, utc_day(now) + kDay - now));
    std::unique_lock lock(wait_mu_);
    cv_.wait_for(lock, std::chrono::seconds(wait_s), [this] { return stop_; });
    if (stop_) break;
  }
}

int64_t ReportSender::offset_for(const std::string& domain) const {
  int64_t spread;
  {
    std::lock_guard lock(mu_);
    spread = config_.spread().seconds();
  }
  return spread <= 0 ? 0 : static_cast<int64_t>(fnv1a(domain) % static_cast<uint64_t>(spread));
}

std::string ReportSender::base_name(const PendingReport& p) const {
  return dir_ + "/" + std::to_string(p.day) + "_" + safe(p.domain);
}

bool ReportSender::save(const PendingReport& p) const {
  std::string error;
  if (write_atomic(base_name(p) + ".job", format_job(p), &error)) return true;
  log::error("tlsrpt.state_write_failed").kv("domain", p.domain).kv("error", error);
  return false;
}

void ReportSender::remove(const PendingReport& p) const {
  ::unlink((base_name(p) + ".job").c_str());
  ::unlink((base_name(p) + ".json.gz").c_str());
}

std::vector<PendingReport> ReportSender::pending() const {
  std::vector<PendingReport> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    if (e.path().extension() != ".job") continue;
    auto text = read_file(e.path().string());
    if (!text) continue;
    auto p = parse_job(*text);
    if (!p) {
      log::error("tlsrpt.job_unreadable").kv("file", e.path().string());
      continue;
    }
    out.push_back(std::move(*p));
  }
  std::sort(out.begin(), out.end(), [](const PendingReport& a, const PendingReport& b) { return std::tie(a.due, a.domain) < std::tie(b.due, b.domain); });
  return out;
}

size_t ReportSender::tick() {
  const int64_t now = deps_.now();
  create_reports(now);
  return send_due(now);
}

void ReportSender::create_reports(int64_t now) {
  const int64_t today = utc_day(now);
  const std::string cursor_path = dir_ + "/cursor";
  int64_t cursor = 0;  // the last day whose reports exist
  if (auto text = read_file(cursor_path)) {
    try {
      cursor = std::stoll(*text);
    } catch (const std::exception&) {
      log::error("tlsrpt.cursor_unreadable").kv("file", cursor_path).kv("content", *text);
    }
  }
  // First start (or a lost cursor): report yesterday, which may hold outcomes of an earlier run.
  if (cursor == 0) cursor = today - 2 * kDay;
  if (cursor > today) {
    log::warning("tlsrpt.clock_moved_back").kv("cursor", format_datetime(cursor)).kv("today", format_datetime(today));
    cursor = today - kDay;  // the clock went back: start again from yesterday instead of waiting
  }
  int64_t first = std::max(cursor + kDay, today - kCatchUpDays * kDay);
  ReportIdentity who;
  {
    std::lock_guard lock(mu_);
    who = ReportIdentity{config_.organization_name(), config_.contact_info(), config_.submitter()};
  }
  for (int64_t day = first; day < today; day += kDay) {
    std::string error;
    auto rows = deps_.outcomes(day, &error);
    if (!rows) {
      if (error != last_outcomes_error_)
        log::warning("tlsrpt.outcomes_unavailable").kv("day", format_datetime(day)).kv("error", error).kv("retry", "next minute");
      last_outcomes_error_ = error;
      return;  // the day stays unreported until the data plane answers
    }
    last_outcomes_error_.clear();
    auto reports = aggregate(day, *rows, who);
    for (Report& r : reports) {
      const std::string domain = r.policies.front().policy.policy_domain;
      // MTA-STS policy strings: the data plane records mode and mx; max_age comes from the cache.
      for (auto& pr : r.policies) {
        if (pr.policy.policy_type != PolicyType::kSts || pr.policy.policy_string.empty() || !deps_.sts_max_age) continue;
        std::string id;
        for (const auto& o : *rows)
          if (lower(o.policy_domain()) == domain && o.policy_type() == "sts" && !o.policy_id().empty()) id = o.policy_id();
        if (auto age = deps_.sts_max_age(domain, id)) pr.policy.policy_string.push_back("max_age: " + std::to_string(*age));
      }
      PendingReport p;
      p.day = day;
      p.domain = domain;
      p.report_id = r.report_id;
      p.due = day + kDay + offset_for(domain);
      for (const auto& pr : r.policies) {
        p.successes += pr.summary.total_successful_session_count;
        p.failures += pr.summary.total_failure_session_count;
      }
      std::string werr;
      if (!write_atomic(base_name(p) + ".json.gz", https_body(r), &werr) || !save(p)) {
        log::error("tlsrpt.state_write_failed").kv("domain", domain).kv("error", werr);
        return;  // retried from this day on the next pass
      }
      log::info("tlsrpt.report_created").kv("day", format_datetime(day)).kv("domain", domain).kv("report_id", r.report_id)
          .kv("policies", static_cast<uint64_t>(r.policies.size())).kv("successes", p.successes).kv("failures", p.failures)
          .kv("due", format_datetime(p.due));
    }
    std::string werr;
    if (!write_atomic(cursor_path, std::to_string(day), &werr)) {
      log::error("tlsrpt.state_write_failed").kv("file", cursor_path).kv("error", werr);
      return;
    }
    log::info("tlsrpt.day_closed").kv("day", format_datetime(day)).kv("reports", static_cast<uint64_t>(reports.size()));
  }
}

size_t ReportSender::send_due(int64_t now) {
  config::v1::TlsRptReports cfg;
  {
    std::lock_guard lock(mu_);
    cfg = config_;
  }
  const int64_t retry_min = std::max<int64_t>(1, cfg.retry_min().seconds());
  const int64_t retry_max = std::max(retry_min, cfg.retry_max().seconds());
  size_t attempts = 0;
  for (PendingReport p : pending()) {
    if (p.due > now || p.next_attempt > now) continue;
    auto body = read_file(base_name(p) + ".json.gz");
    if (!body) {
      log::error("tlsrpt.report_missing").kv("domain", p.domain).kv("file", base_name(p) + ".json.gz");
      remove(p);
      continue;
    }
    ++attempts;
    std::string error;
    bool temporary = false;
    if (!p.looked_up) {
      RuaLookup rua = deps_.lookup_rua(p.domain);
      if (rua.kind == RuaLookup::Kind::kNone) {
        log::info("tlsrpt.not_sent").kv("domain", p.domain).kv("report_id", p.report_id).kv("reason", rua.detail);
        remove(p);
        continue;
      }
      if (rua.kind == RuaLookup::Kind::kTemporaryFailure) {
        error = "_smtp._tls." + p.domain + " lookup failed: " + rua.detail;
        temporary = true;
      } else {
        p.looked_up = true;
        for (const auto& u : rua.rua) p.targets.push_back({u, false, {}});
      }
    }
    bool unreadable = false;
    if (p.looked_up) {
      const std::string gz = *body;
      std::optional<Report> report;
      for (auto& t : p.targets) {
        if (unreadable) break;
        if (t.done) continue;
        std::string terr;
        const std::string scheme = lower(t.uri.substr(0, t.uri.find(':')));
        if (gz.size() > cfg.max_report_size()) {
          t.result = "report of " + std::to_string(gz.size()) + " bytes exceeds max_report_size";
          t.done = true;  // never sendable: do not retry
          log::error("tlsrpt.too_large").kv("domain", p.domain).kv("uri", t.uri).kv("bytes", static_cast<uint64_t>(gz.size()));
          continue;
        }
        if (scheme == "mailto") {
          const std::string to = mailto_address(t.uri);
          if (to.empty()) {
            t.done = true;
            t.result = "not a usable mailto: address";
            log::warning("tlsrpt.bad_target").kv("domain", p.domain).kv("uri", t.uri);
            continue;
          }
          if (!report) {
            std::string perr;
            auto unz = gunzip(gz, 64ULL << 20, &perr);
            if (unz) report = parse_json(*unz, &perr);
            if (!report) {
              log::error("tlsrpt.report_unreadable").kv("domain", p.domain).kv("error", perr);
              unreadable = true;
              continue;
            }
          }
          MailOptions mo;
          mo.from = cfg.from();
          mo.to = to;
          mo.submitter = cfg.submitter();
          mo.message_id_domain = cfg.submitter();
          mo.date = now;
          auto qid = deps_.submit_mail(cfg.from(), to, mail_message(*report, mo), &terr);
          if (qid) {
            t.done = true;
            t.result = "queued as " + *qid;
          } else {
            t.result = terr;
          }
        } else if (scheme == "https") {
          if (deps_.post_https(t.uri, gz, &terr)) {
            t.done = true;
            t.result = terr.empty() ? "accepted" : terr;
          } else {
            t.result = terr;
          }
        } else {
          t.done = true;
          t.result = "unsupported scheme";
        }
        if (t.done) {
          log::info("tlsrpt.sent").kv("domain", p.domain).kv("report_id", p.report_id).kv("uri", t.uri).kv("result", t.result);
        } else {
          log::warning("tlsrpt.send_failed").kv("domain", p.domain).kv("report_id", p.report_id).kv("uri", t.uri)
              .kv("attempt", static_cast<uint64_t>(p.attempts + 1)).kv("error", t.result);
          error = t.uri + ": " + t.result;
          temporary = true;
        }
      }
    }
    if (unreadable) {
      remove(p);
      continue;
    }
    if (!temporary) {
      log::info("tlsrpt.report_done").kv("domain", p.domain).kv("report_id", p.report_id).kv("targets", static_cast<uint64_t>(p.targets.size()));
      remove(p);
      continue;
    }
    ++p.attempts;
    p.last_error = error;
    if (now - p.due >= cfg.give_up_after().seconds()) {
      log::error("tlsrpt.gave_up").kv("domain", p.domain).kv("report_id", p.report_id).kv("attempts", static_cast<uint64_t>(p.attempts))
          .kv("error", error);
      remove(p);
      continue;
    }
    {
      int64_t delay = retry_min;
      for (uint32_t i = 1; i < p.attempts && delay < retry_max; ++i) delay *= 2;
      p.next_attempt = now + std::min(delay, retry_max);
    }
    save(p);
  }
  return attempts;
}

// ---- the daemon's dependencies ---------------------------------------------------------------------

namespace {

// The endpoint's answer body is not used (a short piece is kept for the log).
size_t curl_keep_head(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() < 512) s->append(data, std::min(size * n, 512 - s->size()));
  return size * n;
}

struct ThreadResolver {
  std::unique_ptr<resolver::Resolver> res;
  std::string error;
};

// Resolves on the calling thread with a resolver it owns (created on first use, per thread).
resolver::Resolver* thread_resolver(const resolver::ResolverOptions& options, std::string* error) {
  thread_local ThreadResolver tr;
  if (!tr.res) tr.res = resolver::Resolver::create(options, &tr.error);
  if (!tr.res) *error = "resolver: " + tr.error;
  return tr.res.get();
}

resolver::Resolver::Result lookup_sync(resolver::Resolver& r, const std::string& name, uint16_t type) {
  resolver::Resolver::Result out;
  bool done = false;
  r.lookup(name, type, [&](const resolver::Resolver::Result& res, bool) {
    out = res;
    done = true;
  });
  r.run_until([&] { return done; });
  return out;
}

}  // namespace

SenderDeps daemon_deps(const config::v1::Config& config, std::function<int64_t()> now) {
  SenderDeps d;
  d.now = std::move(now);
  const std::string sock = config.management().dataplane_socket();
  d.outcomes = [sock](int64_t day, std::string* error) -> std::optional<std::vector<v1::TlsOutcome>> {
    v1::Request req;
    req.mutable_tls_outcomes()->set_day_from(day);
    v1::Response resp;
    const auto st = mgmt::call(sock, req, &resp, 30000, error);
    if (st != mgmt::CallStatus::kOk) return std::nullopt;
    if (resp.error().code() != v1::Error::OK) {
      *error = resp.error().message();
      return std::nullopt;
    }
    return std::vector<v1::TlsOutcome>(resp.tls_outcomes().outcomes().begin(), resp.tls_outcomes().outcomes().end());
  };
  d.submit_mail = [sock](const std::string& from, const std::string& to, const std::string& message,
                         std::string* error) -> std::optional<std::string> {
    v1::Request req;
    auto* s = req.mutable_submit();
    s->set_mail_from(from);
    s->add_recipients(to);
    s->set_message(message);
    s->set_tlsrpt_exempt(true);
    s->set_origin("tlsrpt");
    v1::Response resp;
    const auto st = mgmt::call(sock, req, &resp, 60000, error);
    if (st != mgmt::CallStatus::kOk) return std::nullopt;
    if (resp.error().code() != v1::Error::OK) {
      *error = "data plane: " + resp.error().message();
      return std::nullopt;
    }
    return resp.submit().queue_id();
  };
  const resolver::ResolverOptions ropts = resolver::resolver_options(config.resolver());
  d.lookup_rua = [ropts](const std::string& domain) {
    RuaLookup out;
    std::string error;
    resolver::Resolver* r = thread_resolver(ropts, &error);
    if (r == nullptr) {
      out.detail = error;
      return out;
    }
    auto res = lookup_sync(*r, "_smtp._tls." + domain, resolver::kTypeTxt);
    if (!res || res->security == resolver::Security::kFailure) {
      out.detail = res ? res->why : "no answer";
      return out;
    }
    if (res->security == resolver::Security::kBogus) {
      out.detail = "DNSSEC validation failed: " + res->why;
      return out;
    }
    return rua_from_txt(res->kind == resolver::AnswerKind::kData ? res->answer.txt : std::vector<std::string>{});
  };
  const std::string ca_file = config.tlsrpt().reports().ca_file();
  d.post_https = [ropts, ca_file](const std::string& url, const std::string& body, std::string* error) {
    // https://host[:port]/path: the host's addresses come from our resolver, handed to curl with
    // CURLOPT_RESOLVE (as the MTA-STS fetcher does), so the name is verified against the
    // certificate while no blocking getaddrinfo runs.
    std::string rest = url.substr(8);
    const size_t slash = rest.find_first_of("/?#");
    std::string hostport = rest.substr(0, slash);
    if (size_t at = hostport.rfind('@'); at != std::string::npos) hostport = hostport.substr(at + 1);
    std::string host = hostport;
    int port = 443;
    if (!host.empty() && host[0] == '[') {
      *error = "IP literal hosts are not supported";
      return false;
    }
    if (size_t colon = host.find(':'); colon != std::string::npos) {
      try {
        port = std::stoi(host.substr(colon + 1));
      } catch (const std::exception&) {
        *error = "bad port in " + url;
        return false;
      }
      host.resize(colon);
    }
    std::string rerr;
    resolver::Resolver* r = thread_resolver(ropts, &rerr);
    if (r == nullptr) {
      *error = rerr;
      return false;
    }
    std::vector<std::string> addrs;
    for (uint16_t type : {resolver::kTypeAaaa, resolver::kTypeA}) {
      auto res = lookup_sync(*r, host, type);
      if (res && (res->security == resolver::Security::kSecure || res->security == resolver::Security::kInsecure))
        for (const auto& a : res->answer.addresses) addrs.push_back(a);
    }
    if (addrs.empty()) {
      *error = "no address for " + host;
      return false;
    }
    std::string resolve_entry = host + ":" + std::to_string(port) + ":";
    for (size_t i = 0; i < addrs.size(); ++i)
      resolve_entry += (i ? "," : "") + (addrs[i].find(':') != std::string::npos ? "[" + addrs[i] + "]" : addrs[i]);
    CURL* c = curl_easy_init();
    if (c == nullptr) {
      *error = "curl_easy_init failed";
      return false;
    }
    curl_slist* resolve = curl_slist_append(nullptr, resolve_entry.c_str());
    curl_slist* headers = curl_slist_append(nullptr, ("Content-Type: " + https_content_type()).c_str());
    std::string answer;
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    if (!ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mxedge-tlsrpt");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_keep_head);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    const CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(resolve);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
      *error = errbuf[0] != 0 ? std::string(errbuf) : curl_easy_strerror(rc);
      return false;
    }
    if (status < 200 || status > 299) {
      *error = "HTTP " + std::to_string(status);
      return false;
    }
    *error = "HTTP " + std::to_string(status);
    return true;
  };
  return d;
}

}  // namespace mxedge::tlsrpt
