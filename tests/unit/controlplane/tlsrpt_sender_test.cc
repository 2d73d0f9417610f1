// The TLS-RPT report sender with an injected clock: aggregation of a day's outcomes, the UTC day
// boundary, the per-domain spread, retries with back-off, giving up, restarts, and the rua lookup
// outcomes. The transports are recorded here; the integration test (test_tlsrpt_reports.py) sends
// through the real data plane and an HTTPS receiver.
#include "controlplane/tlsrpt/sender.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>

namespace mxedge::tlsrpt {
namespace {

namespace v1 = mxedge::mgmt::v1;

constexpr int64_t kD = 1763769600;  // 2025-11-22T00:00:00Z
constexpr int64_t kDay = 86400;

v1::TlsOutcome row(int64_t day, const std::string& domain, const std::string& type, const std::string& result, uint64_t n,
                   const std::string& mx = "", const std::string& ip = "") {
  v1::TlsOutcome o;
  o.set_day(day);
  o.set_policy_domain(domain);
  o.set_policy_type(type);
  o.set_result_type(result);
  o.set_sessions(n);
  if (type == "sts") {
    o.set_policy_id("20251101T000000");
    o.add_policy_strings("version: STSv1");
    o.add_policy_strings("mode: enforce");
    o.add_policy_strings("mx: *.example.org");
    o.add_mx_hosts("*.example.org");
  } else if (type == "tlsa") {
    o.add_policy_strings("3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  }
  if (!result.empty()) {
    o.set_receiving_mx_hostname(mx);
    o.set_receiving_ip(ip);
    o.set_sending_mta_ip("192.0.2.1");
  }
  return o;
}

struct Harness {
  std::string dir;
  int64_t now = kD + 3600;
  std::vector<v1::TlsOutcome> rows;
  bool dataplane_up = true;
  std::map<std::string, RuaLookup> rua;  // by domain; missing: none
  std::vector<std::tuple<std::string, std::string, std::string>> mails;  // from, to, message
  std::vector<std::pair<std::string, std::string>> posts;                // url, body
  int https_failures_left = 0;
  std::vector<int64_t> days_asked;
  config::v1::Config cfg;

  Harness() {
    dir = std::filesystem::temp_directory_path() / ("tlsrpt-sender-" + std::to_string(::getpid()) + "-" +
                                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    auto* r = cfg.mutable_tlsrpt()->mutable_reports();
    r->set_enabled(true);
    r->set_organization_name("Example Gateway");
    r->set_contact_info("tlsrpt@gw.example");
    r->set_submitter("gw.example");
    r->set_from("tlsrpt-noreply@gw.example");
    r->mutable_spread()->set_seconds(0);
    r->set_state_dir(dir);
    r->mutable_retry_min()->set_seconds(300);
    r->mutable_retry_max()->set_seconds(1200);
    r->mutable_give_up_after()->set_seconds(6 * 3600);
    r->set_max_report_size(1 << 20);
  }
  ~Harness() { std::filesystem::remove_all(dir); }

  SenderDeps deps() {
    SenderDeps d;
    d.now = [this] { return now; };
    d.outcomes = [this](int64_t day, std::string* error) -> std::optional<std::vector<v1::TlsOutcome>> {
      days_asked.push_back(day);
      if (!dataplane_up) {
        *error = "no data plane";
        return std::nullopt;
      }
      std::vector<v1::TlsOutcome> out;
      for (const auto& r : rows)
        if (r.day() == day) out.push_back(r);
      return out;
    };
    d.lookup_rua = [this](const std::string& domain) {
      auto it = rua.find(domain);
      if (it != rua.end()) return it->second;
      RuaLookup none;
      none.kind = RuaLookup::Kind::kNone;
      none.detail = "no v=TLSRPTv1 record";
      return none;
    };
    d.submit_mail = [this](const std::string& from, const std::string& to, const std::string& msg, std::string*) -> std::optional<std::string> {
      mails.emplace_back(from, to, msg);
      return "QID" + std::to_string(mails.size());
    };
    d.post_https = [this](const std::string& url, const std::string& body, std::string* error) {
      if (https_failures_left > 0) {
        --https_failures_left;
        *error = "HTTP 503";
        return false;
      }
      posts.emplace_back(url, body);
      *error = "HTTP 200";
      return true;
    };
    d.sts_max_age = [](const std::string&, const std::string& id) -> std::optional<uint32_t> {
      if (id == "20251101T000000") return 604800;
      return std::nullopt;
    };
    return d;
  }

  std::unique_ptr<ReportSender> open() {
    std::string error;
    auto s = ReportSender::open(cfg, deps(), &error);
    EXPECT_NE(s, nullptr) << error;
    return s;
  }

  static RuaLookup found(std::vector<std::string> uris) {
    RuaLookup r;
    r.kind = RuaLookup::Kind::kFound;
    r.rua = std::move(uris);
    return r;
  }
};

Report decode(const std::string& gz) {
  std::string error;
  auto json = gunzip(gz, 1 << 24, &error);
  EXPECT_TRUE(json) << error;
  auto r = parse_json(json ? *json : "", &error);
  EXPECT_TRUE(r) << error;
  return r ? *r : Report{};
}

TEST(TlsRptAggregate, OneReportPerDomainGroupedByPolicy) {
  const ReportIdentity who{"Org", "mailto:c@gw.example", "gw.example"};
  std::vector<v1::TlsOutcome> rows = {
      row(kD, "example.org", "sts", "", 10),
      row(kD, "example.org", "sts", "certificate-expired", 2, "mx1.example.org", "198.51.100.7"),
      row(kD, "example.org", "sts", "certificate-expired", 1, "mx1.example.org", "198.51.100.7"),  // another worker's row
      row(kD, "example.org", "sts", "starttls-not-supported", 1, "mx2.example.org", "198.51.100.8"),
      row(kD, "dane.example", "tlsa", "", 4),
      row(kD, "plain.example", "no-policy-found", "", 3),
      row(kD + kDay, "example.org", "sts", "", 99),  // the next day: not in this report
      row(kD, "future.example", "some-new-type", "", 1),
  };
  auto reports = aggregate(kD + 1234, rows, who);
  ASSERT_EQ(reports.size(), 3u);
  // Sorted by domain.
  EXPECT_EQ(reports[0].policies[0].policy.policy_domain, "dane.example");
  EXPECT_EQ(reports[1].policies[0].policy.policy_domain, "example.org");
  EXPECT_EQ(reports[2].policies[0].policy.policy_domain, "plain.example");

  const Report& r = reports[1];
  EXPECT_EQ(r.organization_name, "Org");
  EXPECT_EQ(r.contact_info, "mailto:c@gw.example");
  EXPECT_EQ(r.date_range.start_datetime, "2025-11-22T00:00:00Z");
  EXPECT_EQ(r.date_range.end_datetime, "2025-11-22T23:59:59Z");
  EXPECT_EQ(r.report_id, "2025-11-22T00:00:00Z_example.org");
  ASSERT_EQ(r.policies.size(), 1u);
  const PolicyReport& p = r.policies[0];
  EXPECT_EQ(p.policy.policy_type, PolicyType::kSts);
  EXPECT_EQ(p.policy.policy_string, (std::vector<std::string>{"version: STSv1", "mode: enforce", "mx: *.example.org"}));
  EXPECT_EQ(p.policy.mx_host, std::vector<std::string>{"*.example.org"});
  EXPECT_EQ(p.summary.total_successful_session_count, 10u);
  EXPECT_EQ(p.summary.total_failure_session_count, 4u);
  ASSERT_EQ(p.failure_details.size(), 2u);
  EXPECT_EQ(p.failure_details[0].result_type, "certificate-expired");
  EXPECT_EQ(p.failure_details[0].failed_session_count, 3u);  // two rows merged
  EXPECT_EQ(p.failure_details[0].receiving_ip, "198.51.100.7");
  EXPECT_EQ(p.failure_details[1].result_type, "starttls-not-supported");

  EXPECT_EQ(reports[0].policies[0].policy.policy_type, PolicyType::kTlsa);
  EXPECT_EQ(reports[0].policies[0].policy.policy_string.size(), 1u);
  EXPECT_EQ(reports[2].policies[0].policy.policy_type, PolicyType::kNoPolicyFound);
  EXPECT_TRUE(reports[2].policies[0].policy.policy_string.empty());
  // The JSON round-trips through the strict parser.
  std::string error;
  auto back = parse_json(to_json(r), &error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(*back, r);
}

TEST(TlsRptSender, DayBoundaryWithInjectedClock) {
  Harness h;
  h.rows = {row(kD, "example.org", "sts", "", 5), row(kD + kDay, "example.org", "sts", "", 7)};
  h.rua["example.org"] = Harness::found({"mailto:tlsrpt@example.org", "https://reports.example.org/v1/tlsrpt"});
  auto s = h.open();

  // Day D is still running: nothing to create for it (the first start reports yesterday, D-1).
  h.now = kD + kDay - 1;
  s->tick();
  EXPECT_EQ(h.days_asked, std::vector<int64_t>{kD - kDay});
  EXPECT_TRUE(h.mails.empty());
  EXPECT_TRUE(s->pending().empty());

  // One second after midnight: day D is closed, reported and (spread 0) sent at once.
  h.now = kD + kDay;
  EXPECT_EQ(s->tick(), 1u);
  EXPECT_EQ(h.days_asked.back(), kD);
  ASSERT_EQ(h.mails.size(), 1u);
  ASSERT_EQ(h.posts.size(), 1u);
  EXPECT_EQ(std::get<0>(h.mails[0]), "tlsrpt-noreply@gw.example");
  EXPECT_EQ(std::get<1>(h.mails[0]), "tlsrpt@example.org");
  const std::string& msg = std::get<2>(h.mails[0]);
  EXPECT_NE(msg.find("TLS-Report-Domain: example.org\r\n"), std::string::npos);
  EXPECT_NE(msg.find("TLS-Report-Submitter: gw.example\r\n"), std::string::npos);
  EXPECT_NE(msg.find("report-type=\"tlsrpt\""), std::string::npos);
  EXPECT_NE(msg.find("gw.example!example.org!1763769600!1763855999"), std::string::npos);
  EXPECT_EQ(h.posts[0].first, "https://reports.example.org/v1/tlsrpt");
  Report r = decode(h.posts[0].second);
  EXPECT_EQ(r.date_range.start_datetime, "2025-11-22T00:00:00Z");
  ASSERT_EQ(r.policies.size(), 1u);
  EXPECT_EQ(r.policies[0].summary.total_successful_session_count, 5u);  // not the next day's 7
  // max_age comes from the control plane's cache.
  EXPECT_EQ(r.policies[0].policy.policy_string.back(), "max_age: 604800");
  EXPECT_TRUE(s->pending().empty());

  // The same day is never reported twice.
  h.now += 3600;
  s->tick();
  EXPECT_EQ(h.mails.size(), 1u);
  EXPECT_EQ(h.posts.size(), 1u);
}

TEST(TlsRptSender, SpreadDelaysEachDomainByAFixedOffset) {
  Harness h;
  h.cfg.mutable_tlsrpt()->mutable_reports()->mutable_spread()->set_seconds(4 * 3600);
  for (const char* d : {"a.example", "b.example", "c.example", "d.example"}) {
    h.rows.push_back(row(kD, d, "no-policy-found", "", 1));
    h.rua[d] = Harness::found({"https://r.example/" + std::string(d)});
  }
  auto s = h.open();
  h.now = kD + kDay;
  s->tick();
  auto pending = s->pending();
  ASSERT_EQ(pending.size() + h.posts.size(), 4u);
  std::set<int64_t> dues;
  for (const auto& p : pending) {
    EXPECT_GE(p.due, kD + kDay);
    EXPECT_LT(p.due, kD + kDay + 4 * 3600);
    dues.insert(p.due);
  }
  EXPECT_GE(dues.size(), 2u) << "the domains should not all be due at the same second";
  // A restart computes the same due times (the offset is a hash of the domain).
  s.reset();
  auto s2 = h.open();
  auto again = s2->pending();
  ASSERT_EQ(again.size(), pending.size());
  for (size_t i = 0; i < again.size(); ++i) EXPECT_EQ(again[i].due, pending[i].due);
  // By the end of the spread everything went out, each once.
  h.now = kD + kDay + 4 * 3600;
  s2->tick();
  EXPECT_EQ(h.posts.size(), 4u);
  EXPECT_TRUE(s2->pending().empty());
}

TEST(TlsRptSender, FailedSendsAreRetriedWithBackoffAndOtherTargetsNotRepeated) {
  Harness h;
  h.rows = {row(kD, "example.org", "tlsa", "", 3)};
  h.rua["example.org"] = Harness::found({"mailto:r@example.org", "https://r.example.org/x"});
  h.https_failures_left = 2;
  auto s = h.open();
  h.now = kD + kDay;
  s->tick();
  EXPECT_EQ(h.mails.size(), 1u);
  EXPECT_TRUE(h.posts.empty());
  auto p = s->pending();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].attempts, 1u);
  EXPECT_EQ(p[0].next_attempt, kD + kDay + 300);
  EXPECT_NE(p[0].last_error.find("HTTP 503"), std::string::npos);
  ASSERT_EQ(p[0].targets.size(), 2u);
  EXPECT_TRUE(p[0].targets[0].done);
  EXPECT_EQ(p[0].targets[0].result, "queued as QID1");

  h.now = kD + kDay + 299;  // not yet
  EXPECT_EQ(s->tick(), 0u);
  h.now = kD + kDay + 300;  // second failure: the delay doubles
  EXPECT_EQ(s->tick(), 1u);
  p = s->pending();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].next_attempt, kD + kDay + 300 + 600);
  h.now = kD + kDay + 900;
  s->tick();
  EXPECT_EQ(h.posts.size(), 1u);
  EXPECT_EQ(h.mails.size(), 1u) << "the mailto target took the report the first time";
  EXPECT_TRUE(s->pending().empty());
}

TEST(TlsRptSender, GivesUpAfterTheLimit) {
  Harness h;
  h.rows = {row(kD, "example.org", "tlsa", "", 3)};
  h.rua["example.org"] = Harness::found({"https://r.example.org/x"});
  h.https_failures_left = 1000;
  auto s = h.open();
  for (h.now = kD + kDay; h.now <= kD + kDay + 7 * 3600; h.now += 60) s->tick();
  EXPECT_TRUE(s->pending().empty());
  EXPECT_TRUE(h.posts.empty());
  // retry_max bounds the attempts: about 6h / 20min, not one a minute.
  EXPECT_LT(1000 - h.https_failures_left, 25);
  EXPECT_GT(1000 - h.https_failures_left, 10);
}

TEST(TlsRptSender, NoRecordTemporaryFailureAndDataPlaneDown) {
  Harness h;
  h.rows = {row(kD, "norecord.example", "tlsa", "", 1), row(kD, "flaky.example", "tlsa", "", 1)};
  RuaLookup temp;
  temp.kind = RuaLookup::Kind::kTemporaryFailure;
  temp.detail = "timeout";
  h.rua["flaky.example"] = temp;
  h.dataplane_up = false;
  auto s = h.open();
  h.now = kD + kDay + 10;
  s->tick();
  EXPECT_TRUE(s->pending().empty()) << "nothing is created while the data plane cannot be asked";
  h.dataplane_up = true;
  h.now += 60;
  s->tick();
  auto p = s->pending();
  ASSERT_EQ(p.size(), 1u) << "the domain without a record is dropped; the flaky one waits";
  EXPECT_EQ(p[0].domain, "flaky.example");
  EXPECT_FALSE(p[0].looked_up);
  EXPECT_NE(p[0].last_error.find("timeout"), std::string::npos);
  h.rua["flaky.example"] = Harness::found({"https://r.flaky.example/"});
  h.now = p[0].next_attempt;
  s->tick();
  EXPECT_EQ(h.posts.size(), 1u);
  EXPECT_TRUE(s->pending().empty());
}

TEST(TlsRptSender, CatchesUpAfterDowntimeButNotForever) {
  Harness h;
  for (int i = -10; i <= 10; ++i) h.rows.push_back(row(kD + i * kDay, "example.org", "tlsa", "", 1));
  h.rua["example.org"] = Harness::found({"https://r.example.org/x"});
  auto s = h.open();
  h.now = kD + kDay + 5;
  s->tick();
  // First start: only the day just closed.
  EXPECT_EQ(h.posts.size(), 1u);
  // Down for five days: on return, at most the last three closed days are reported.
  h.now = kD + 6 * kDay + 5;
  auto s2 = h.open();
  s2->tick();
  EXPECT_EQ(h.posts.size(), 4u);
  std::set<std::string> starts;
  for (const auto& [url, body] : h.posts) starts.insert(decode(body).date_range.start_datetime);
  EXPECT_EQ(starts.size(), 4u) << "no day twice";
  EXPECT_EQ(*starts.rbegin(), "2025-11-27T00:00:00Z");
}

TEST(TlsRptSender, ParsesRecordsAndAddresses) {
  EXPECT_EQ(rua_from_txt({"v=spf1 -all"}).kind, RuaLookup::Kind::kNone);
  auto one = rua_from_txt({"v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@example.org,https://r.example.org/p"});
  ASSERT_EQ(one.kind, RuaLookup::Kind::kFound);
  EXPECT_EQ(one.rua, (std::vector<std::string>{"mailto:a@example.org", "https://r.example.org/p"}));
  auto two = rua_from_txt({"v=TLSRPTv1; rua=mailto:a@example.org", "v=TLSRPTv1; rua=mailto:b@example.org"});
  EXPECT_EQ(two.kind, RuaLookup::Kind::kNone);
  EXPECT_NE(two.detail.find("exactly one"), std::string::npos);
  auto bad = rua_from_txt({"v=TLSRPTv1; rua=ftp://x"});
  EXPECT_EQ(bad.kind, RuaLookup::Kind::kNone);

  EXPECT_EQ(mailto_address("mailto:tlsrpt@example.org"), "tlsrpt@example.org");
  EXPECT_EQ(mailto_address("MAILTO:tls%2Drpt@example.org?subject=x"), "tls-rpt@example.org");
  EXPECT_EQ(mailto_address("mailto:no-at-sign"), "");
  EXPECT_EQ(mailto_address("mailto:a@b%0d%0aRCPT"), "");
  EXPECT_EQ(mailto_address("mailto:a%00b@example.org"), "");
  EXPECT_EQ(mailto_address("mailto:\"a b\"@example.org"), "");
  EXPECT_EQ(mailto_address("https://x"), "");

  PendingReport p;
  p.day = kD;
  p.domain = "example.org";
  p.report_id = "id";
  p.due = kD + kDay;
  p.attempts = 3;
  p.looked_up = true;
  p.targets = {{"mailto:a@example.org", true, "queued as X"}, {"https://r/x", false, "HTTP 503\nmore"}};
  p.last_error = "line1\nline2";
  auto back = parse_job(format_job(p));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->domain, "example.org");
  EXPECT_EQ(back->attempts, 3u);
  ASSERT_EQ(back->targets.size(), 2u);
  EXPECT_EQ(back->targets[1].result, "HTTP 503 more");
  EXPECT_EQ(back->last_error, "line1 line2");
  EXPECT_FALSE(parse_job("garbage"));
  EXPECT_FALSE(parse_job("day x\ndomain y\n"));
}

}  // namespace
}  // namespace mxedge::tlsrpt
