// TLS-RPT reports (controlplane/tlsrpt/report): RFC 8460 Appendix B's example parses and survives a
// round trip through to_json; rejections name the member path; gzip/gunzip with the output bound; the
// §5.1 file name; the §5.3 report mail taken apart again (headers, MIME structure, the attachment).
#include <gtest/gtest.h>

#include "tests/unit/support/rfc8460_example.h"
#include <zlib.h>

#include <cctype>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "controlplane/tlsrpt/report.h"

namespace mxedge::tlsrpt {
namespace {

constexpr const char* kRfcExample = test::kRfc8460Example;

// Every member name is hyphenated lower case, as the RFC spells them (no "organization_name").
bool hyphenated_names_only(const nlohmann::json& j) {
  if (j.is_array()) {
    for (const auto& e : j)
      if (!hyphenated_names_only(e)) return false;
  } else if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      for (char c : key)
        if (!((c >= 'a' && c <= 'z') || c == '-')) return false;
      if (!hyphenated_names_only(value)) return false;
    }
  }
  return true;
}

Report rfc_report() {
  std::string err;
  auto r = parse_json(kRfcExample, &err);
  EXPECT_TRUE(r.has_value()) << err;
  return r.value_or(Report{});
}

// ---- parsing ----------------------------------------------------------------------------------------

TEST(TlsRptReport, ParsesRfcExample) {
  std::string err;
  const auto r = parse_json(kRfcExample, &err);
  ASSERT_TRUE(r) << err;
  EXPECT_EQ(r->organization_name, "Company-X");
  EXPECT_EQ(r->date_range.start_datetime, "2016-04-01T00:00:00Z");
  EXPECT_EQ(r->date_range.end_datetime, "2016-04-01T23:59:59Z");
  EXPECT_EQ(r->contact_info, "sts-reporting@company-x.example");
  EXPECT_EQ(r->report_id, "5065427c-23d3-47ca-b6e0-946ea0e8c4be");
  ASSERT_EQ(r->policies.size(), 1u);
  const PolicyReport& p = r->policies[0];
  EXPECT_EQ(p.policy.policy_type, PolicyType::kSts);
  EXPECT_EQ(p.policy.policy_string, (std::vector<std::string>{"version: STSv1", "mode: testing",
                                                              "mx: *.mail.company-y.example", "max_age: 86400"}));
  EXPECT_EQ(p.policy.policy_domain, "company-y.example");
  EXPECT_EQ(p.policy.mx_host, std::vector<std::string>{"*.mail.company-y.example"});
  EXPECT_EQ(p.summary.total_successful_session_count, 5326u);
  EXPECT_EQ(p.summary.total_failure_session_count, 303u);
  ASSERT_EQ(p.failure_details.size(), 3u);

  const FailureDetail& expired = p.failure_details[0];
  EXPECT_EQ(parse_result_type(expired.result_type), ResultType::kCertificateExpired);
  EXPECT_EQ(expired.sending_mta_ip, "2001:db8:abcd:0012::1");
  EXPECT_EQ(expired.receiving_mx_hostname, "mx1.mail.company-y.example");
  EXPECT_EQ(expired.receiving_ip, "");  // the RFC's example leaves it out
  EXPECT_EQ(expired.failed_session_count, 100u);

  const FailureDetail& starttls = p.failure_details[1];
  EXPECT_EQ(parse_result_type(starttls.result_type), ResultType::kStarttlsNotSupported);
  EXPECT_EQ(starttls.sending_mta_ip, "2001:db8:abcd:0013::1");
  EXPECT_EQ(starttls.receiving_mx_hostname, "mx2.mail.company-y.example");
  EXPECT_EQ(starttls.receiving_ip, "203.0.113.56");
  EXPECT_EQ(starttls.failed_session_count, 200u);
  EXPECT_EQ(starttls.additional_information,
            "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported");

  const FailureDetail& validation = p.failure_details[2];
  EXPECT_EQ(parse_result_type(validation.result_type), ResultType::kValidationFailure);
  EXPECT_EQ(validation.sending_mta_ip, "198.51.100.62");
  EXPECT_EQ(validation.receiving_ip, "203.0.113.58");
  EXPECT_EQ(validation.receiving_mx_hostname, "mx-backup.mail.company-y.example");
  EXPECT_EQ(validation.failed_session_count, 3u);
  EXPECT_EQ(validation.failure_reason_code, "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED");
  EXPECT_EQ(validation.receiving_mx_helo, "");
  EXPECT_EQ(validation.additional_information, "");
}

TEST(TlsRptReport, JsonRoundTripWithRfcNames) {
  const Report r = rfc_report();
  const std::string js = to_json(r);
  for (const char* name : {"\"organization-name\"",
                           "\"date-range\"",
                           "\"start-datetime\"",
                           "\"end-datetime\"",
                           "\"contact-info\"",
                           "\"report-id\"",
                           "\"policies\"",
                           "\"policy-type\"",
                           "\"policy-string\"",
                           "\"policy-domain\"",
                           "\"mx-host\"",
                           "\"total-successful-session-count\"",
                           "\"total-failure-session-count\"",
                           "\"failure-details\"",
                           "\"result-type\"",
                           "\"sending-mta-ip\"",
                           "\"receiving-mx-hostname\"",
                           "\"receiving-ip\"",
                           "\"failed-session-count\"",
                           "\"additional-information\"",
                           "\"failure-reason-code\""}) {
    EXPECT_NE(js.find(name), std::string::npos) << name;
  }
  EXPECT_TRUE(hyphenated_names_only(nlohmann::json::parse(js))) << js;
  EXPECT_EQ(js.find("receiving-mx-helo"), std::string::npos);  // empty optional members are left out
  EXPECT_EQ(js.find("\"receiving_ip\""), std::string::npos);
  // The first detail has no receiving-ip: it must not be written as "".
  EXPECT_EQ(js.find("\"receiving-ip\":\"\""), std::string::npos);

  std::string err;
  const auto back = parse_json(js, &err);
  ASSERT_TRUE(back) << err << "\n" << js;
  EXPECT_EQ(*back, r);

  const auto pretty = parse_json(to_json(r, 2), &err);
  ASSERT_TRUE(pretty) << err;
  EXPECT_EQ(*pretty, r);

  // Member order follows the RFC's layout.
  EXPECT_LT(js.find("organization-name"), js.find("date-range"));
  EXPECT_LT(js.find("date-range"), js.find("contact-info"));
  EXPECT_LT(js.find("report-id"), js.find("policies"));
  EXPECT_LT(js.find("\"policy\""), js.find("\"summary\""));
  EXPECT_LT(js.find("\"summary\""), js.find("failure-details"));
}

TEST(TlsRptReport, ProducedReportRoundTrips) {
  Report r;
  r.organization_name = "mxedge";
  r.date_range = {format_datetime(1459468800), format_datetime(1459468800 + 86399)};
  r.contact_info = "tlsrpt@mx.example.com";
  r.report_id = "2016-04-01T00:00:00Z_company-y.example";
  PolicyReport tlsa;
  tlsa.policy.policy_type = PolicyType::kTlsa;
  tlsa.policy.policy_string = {"_25._tcp.mx.company-y.example. IN TLSA 3 1 1 abcd"};
  tlsa.policy.policy_domain = "company-y.example";
  tlsa.summary = {10, 1};
  FailureDetail fd;
  fd.result_type = std::string(to_string(ResultType::kTlsaInvalid));
  fd.sending_mta_ip = "192.0.2.1";
  fd.receiving_mx_hostname = "mx.company-y.example";
  fd.receiving_mx_helo = "mx\xff\xfe.bad";  // invalid UTF-8 from a hostile peer
  fd.receiving_ip = "198.51.100.9";
  fd.failed_session_count = 1;
  tlsa.failure_details.push_back(fd);
  PolicyReport none;
  none.policy.policy_type = PolicyType::kNoPolicyFound;
  none.policy.policy_domain = "company-y.example";
  none.summary = {7, 0};
  r.policies = {tlsa, none};

  std::string js;
  ASSERT_NO_THROW(js = to_json(r));
  std::string err;
  auto back = parse_json(js, &err);
  ASSERT_TRUE(back) << err << "\n" << js;
  EXPECT_EQ(back->policies[0].failure_details[0].receiving_mx_helo, "mx\xef\xbf\xbd\xef\xbf\xbd.bad");  // U+FFFD
  back->policies[0].failure_details[0].receiving_mx_helo = fd.receiving_mx_helo;
  EXPECT_EQ(*back, r);
  // A no-policy-found policy without policy-string, an empty failure-details list.
  const auto j = nlohmann::json::parse(js);
  EXPECT_FALSE(j["policies"][1]["policy"].contains("policy-string"));
  EXPECT_FALSE(j["policies"][1]["policy"].contains("mx-host"));
  EXPECT_TRUE(j["policies"][1]["failure-details"].is_array());
  EXPECT_TRUE(j["policies"][0]["policy"].contains("policy-string"));
}

TEST(TlsRptReport, ResultAndPolicyTypes) {
  const std::vector<std::string> names = {"starttls-not-supported", "certificate-host-mismatch",
                                          "certificate-expired",    "certificate-not-trusted",
                                          "validation-failure",     "tlsa-invalid",
                                          "dnssec-invalid",         "dane-required",
                                          "sts-policy-fetch-error", "sts-policy-invalid",
                                          "sts-webpki-invalid"};
  for (const std::string& n : names) {
    const auto t = parse_result_type(n);
    ASSERT_TRUE(t) << n;
    EXPECT_EQ(to_string(*t), n);
  }
  EXPECT_FALSE(parse_result_type("Certificate-Expired"));
  EXPECT_FALSE(parse_result_type(""));
  for (const char* n : {"sts", "tlsa", "no-policy-found"}) EXPECT_EQ(to_string(*parse_policy_type(n)), n);
  EXPECT_FALSE(parse_policy_type("dane"));
}

TEST(TlsRptReport, UnknownMembersIgnoredUnknownResultTypesKept) {
  auto j = nlohmann::json::parse(kRfcExample);
  j["x-vendor"] = {{"a", 1}};
  j["policies"][0]["policy"]["x-extra"] = 5;
  j["policies"][0]["failure-details"][0]["result-type"] = "some-future-type";
  j["policies"][0]["failure-details"][0]["x-note"] = nullptr;
  j["policies"][0]["failure-details"][1]["receiving-mx-helo"] = "mx2.example";
  std::string err;
  const auto r = parse_json(j.dump(), &err);
  ASSERT_TRUE(r) << err;
  EXPECT_EQ(r->policies[0].failure_details[0].result_type, "some-future-type");
  EXPECT_FALSE(parse_result_type(r->policies[0].failure_details[0].result_type));
  EXPECT_EQ(r->policies[0].failure_details[1].receiving_mx_helo, "mx2.example");
  const auto back = parse_json(to_json(*r), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(*back, *r);

  // failure-details, policy-string and mx-host may be absent.
  j["policies"][0].erase("failure-details");
  j["policies"][0]["policy"].erase("policy-string");
  j["policies"][0]["policy"].erase("mx-host");
  const auto minimal = parse_json(j.dump(), &err);
  ASSERT_TRUE(minimal) << err;
  EXPECT_TRUE(minimal->policies[0].failure_details.empty());
}

struct Rejection {
  const char* what;
  std::function<void(nlohmann::json&)> mutate;
  const char* error;
};

TEST(TlsRptReport, RejectionsNameTheMember) {
  const std::vector<Rejection> cases = {
      {"missing policies", [](nlohmann::json& j) { j.erase("policies"); }, "policies: missing"},
      {"policies not an array",
       [](nlohmann::json& j) {
         j["policies"] = {{"a", 1}};
       },
       "policies: not an array"},
      {"string count", [](nlohmann::json& j) { j["policies"][0]["summary"]["total-failure-session-count"] = "303"; },
       "policies[0].summary.total-failure-session-count: not a non-negative integer"},
      {"negative count",
       [](nlohmann::json& j) { j["policies"][0]["failure-details"][1]["failed-session-count"] = -200; },
       "policies[0].failure-details[1].failed-session-count: not a non-negative integer"},
      {"fractional count",
       [](nlohmann::json& j) { j["policies"][0]["summary"]["total-successful-session-count"] = 5326.5; },
       "policies[0].summary.total-successful-session-count: not a non-negative integer"},
      {"missing count", [](nlohmann::json& j) { j["policies"][0]["summary"].erase("total-successful-session-count"); },
       "policies[0].summary.total-successful-session-count: missing"},
      {"bad date", [](nlohmann::json& j) { j["date-range"]["start-datetime"] = "2016-04-01 00:00"; },
       "date-range.start-datetime: not an RFC 3339 date-time"},
      {"impossible date", [](nlohmann::json& j) { j["date-range"]["end-datetime"] = "2016-02-30T00:00:00Z"; },
       "date-range.end-datetime: not an RFC 3339 date-time"},
      {"end before start", [](nlohmann::json& j) { j["date-range"]["end-datetime"] = "2016-03-31T23:59:59Z"; },
       "date-range.end-datetime: before start-datetime"},
      {"missing date-range", [](nlohmann::json& j) { j.erase("date-range"); }, "date-range: missing"},
      {"date-range not an object", [](nlohmann::json& j) { j["date-range"] = "2016-04-01"; },
       "date-range: not an object"},
      {"organization-name number", [](nlohmann::json& j) { j["organization-name"] = 7; },
       "organization-name: not a string"},
      {"missing report-id", [](nlohmann::json& j) { j.erase("report-id"); }, "report-id: missing"},
      {"missing contact-info", [](nlohmann::json& j) { j.erase("contact-info"); }, "contact-info: missing"},
      {"unknown policy type", [](nlohmann::json& j) { j["policies"][0]["policy"]["policy-type"] = "dane"; },
       "policies[0].policy.policy-type: not one of sts, tlsa, no-policy-found"},
      {"missing policy-domain", [](nlohmann::json& j) { j["policies"][0]["policy"].erase("policy-domain"); },
       "policies[0].policy.policy-domain: missing"},
      {"mx-host element",
       [](nlohmann::json& j) {
         j["policies"][0]["policy"]["mx-host"] = {"a.example", 3};
       },
       "policies[0].policy.mx-host[1]: not a string"},
      {"policy-string a string", [](nlohmann::json& j) { j["policies"][0]["policy"]["policy-string"] = "v"; },
       "policies[0].policy.policy-string: not an array of strings"},
      {"missing summary", [](nlohmann::json& j) { j["policies"][0].erase("summary"); }, "policies[0].summary: missing"},
      {"failure detail not an object", [](nlohmann::json& j) { j["policies"][0]["failure-details"][2] = 3; },
       "policies[0].failure-details[2]: not an object"},
      {"missing result-type", [](nlohmann::json& j) { j["policies"][0]["failure-details"][0].erase("result-type"); },
       "policies[0].failure-details[0].result-type: missing"},
      {"receiving-ip number", [](nlohmann::json& j) { j["policies"][0]["failure-details"][1]["receiving-ip"] = 1; },
       "policies[0].failure-details[1].receiving-ip: not a string"},
  };
  for (const Rejection& c : cases) {
    auto j = nlohmann::json::parse(kRfcExample);
    c.mutate(j);
    std::string err;
    EXPECT_FALSE(parse_json(j.dump(), &err)) << c.what;
    EXPECT_EQ(err, c.error) << c.what;
  }
  std::string err;
  EXPECT_FALSE(parse_json("[1,2]", &err));
  EXPECT_EQ(err, "report: not a JSON object");
  EXPECT_FALSE(parse_json("{\"organization-name\": ", &err));
  EXPECT_EQ(err.rfind("not JSON: ", 0), 0u) << err;
  EXPECT_FALSE(parse_json("", &err));
  EXPECT_FALSE(parse_json(std::string("{\"a\":\"\xff\"}"), &err));  // invalid UTF-8
  EXPECT_FALSE(parse_json(std::string(100000, '['), &err));
  EXPECT_FALSE(err.empty());
  EXPECT_FALSE(parse_json("{}", nullptr));  // no error out-parameter
}

TEST(TlsRptReport, Datetimes) {
  EXPECT_EQ(parse_datetime("2016-04-01T00:00:00Z"), 1459468800);
  EXPECT_EQ(parse_datetime("2016-04-01T23:59:59Z"), 1459555199);
  EXPECT_EQ(parse_datetime("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_datetime("2016-04-01T02:00:00+02:00"), 1459468800);
  EXPECT_EQ(parse_datetime("2016-03-31T22:00:00.123-02:00"), 1459468800);
  EXPECT_EQ(parse_datetime("2016-04-01t00:00:00z"), 1459468800);
  EXPECT_EQ(parse_datetime("2016-12-31T23:59:60Z"), parse_datetime("2016-12-31T23:59:59Z"));
  EXPECT_EQ(parse_datetime("2016-02-29T00:00:00Z"), 1456704000);
  for (const char* bad :
       {"", "2016-04-01", "2016-04-01T00:00:00", "2016-4-01T00:00:00Z", "2016-04-01T24:00:00Z", "2015-02-29T00:00:00Z",
        "2016-13-01T00:00:00Z", "2016-04-00T00:00:00Z", "2016-04-01T00:00:00.Z", "2016-04-01T00:00:00+0200",
        "2016-04-01T00:00:00Z ", "2016-04-01T00:60:00Z", "x016-04-01T00:00:00Z"}) {
    EXPECT_FALSE(parse_datetime(bad)) << bad;
  }
  EXPECT_EQ(format_datetime(1459468800), "2016-04-01T00:00:00Z");
  EXPECT_EQ(format_datetime(1459555199), "2016-04-01T23:59:59Z");
  EXPECT_EQ(format_datetime(0), "1970-01-01T00:00:00Z");
  for (int64_t t : {int64_t{0}, int64_t{951782400}, int64_t{4102444799}, int64_t{1700000000}})
    EXPECT_EQ(parse_datetime(format_datetime(t)), t);
}

// ---- gzip -------------------------------------------------------------------------------------------

TEST(TlsRptGzip, RoundTrip) {
  std::string big;
  for (int i = 0; i < 200000; ++i) big += static_cast<char>((i * 7919) % 251);
  for (const std::string& in : {std::string(), std::string("x"), std::string(kRfcExample), big}) {
    const std::string z = gzip(in);
    ASSERT_GE(z.size(), 18u);
    EXPECT_EQ(static_cast<unsigned char>(z[0]), 0x1f);  // gzip, not zlib or raw deflate
    EXPECT_EQ(static_cast<unsigned char>(z[1]), 0x8b);
    std::string err;
    const auto out = gunzip(z, in.size(), &err);
    ASSERT_TRUE(out) << err;
    EXPECT_EQ(*out, in);
  }
  // Concatenated members are one stream (RFC 1952 §2.2).
  std::string err;
  const auto two = gunzip(gzip("abc") + gzip("def"), 100, &err);
  ASSERT_TRUE(two) << err;
  EXPECT_EQ(*two, "abcdef");
}

TEST(TlsRptGzip, OutputBound) {
  const std::string zeros(size_t{10} * 1024 * 1024, '\0');
  const std::string bomb = gzip(zeros);
  EXPECT_LT(bomb.size(), 20000u);
  std::string err;
  EXPECT_FALSE(gunzip(bomb, size_t{1024} * 1024, &err));
  EXPECT_EQ(err, "decompressed size exceeds 1048576 bytes");
  EXPECT_FALSE(gunzip(gzip("hello"), 4, &err));
  const auto exact = gunzip(gzip("hello"), 5, &err);
  ASSERT_TRUE(exact) << err;
  EXPECT_EQ(*exact, "hello");
  const auto all = gunzip(bomb, zeros.size(), &err);
  ASSERT_TRUE(all) << err;
  EXPECT_EQ(all->size(), zeros.size());
}

TEST(TlsRptGzip, Garbage) {
  std::string err;
  EXPECT_FALSE(gunzip("", 1000, &err));
  EXPECT_FALSE(err.empty());
  EXPECT_FALSE(gunzip("this is not gzip at all", 1000, &err));
  EXPECT_EQ(err, "not gzip data (no gzip header)");
  const std::string z = gzip(kRfcExample);
  EXPECT_FALSE(gunzip(z.substr(0, z.size() - 5), 100000, &err));  // truncated (trailer)
  EXPECT_EQ(err, "truncated gzip data");
  EXPECT_FALSE(gunzip(z.substr(0, z.size() / 2), 100000, &err));
  EXPECT_EQ(err, "truncated gzip data");
  std::string corrupt = z;
  corrupt[corrupt.size() - 6] = static_cast<char>(corrupt[corrupt.size() - 6] ^ 0x55);  // CRC-32 mismatch
  EXPECT_FALSE(gunzip(corrupt, 100000, &err));
  EXPECT_EQ(err.rfind("corrupt gzip data", 0), 0u) << err;
  EXPECT_FALSE(gunzip(z + "junk", 100000, &err));
  EXPECT_EQ(err, "trailing data after the gzip stream");
  std::string bad_method = z;
  bad_method[2] = 7;  // not deflate
  EXPECT_FALSE(gunzip(bad_method, 100000, &err));

  // A zlib (RFC 1950) stream is not accepted.
  const std::string in = "hello hello hello";
  std::string zl(compressBound(in.size()), '\0');
  uLongf zl_len = zl.size();
  ASSERT_EQ(
      compress(reinterpret_cast<Bytef*>(zl.data()), &zl_len, reinterpret_cast<const Bytef*>(in.data()), in.size()),
      Z_OK);
  zl.resize(zl_len);
  EXPECT_FALSE(gunzip(zl, 1000, &err));
}

// ---- file name and mail -----------------------------------------------------------------------------

TEST(TlsRptReport, Filename) {
  // RFC 8460 §5.1's example.
  EXPECT_EQ(report_filename("mail.sndr.example.com", "example.net", 1470013207, 1470186007, "001"),
            "mail.sndr.example.com!example.net!1470013207!1470186007!001.json.gz");
  EXPECT_EQ(report_filename("Mail.Sndr.Example.COM.", "example.net", 1, 2),
            "mail.sndr.example.com!example.net!1!2.json.gz");
  EXPECT_EQ(report_filename("a.example", "b.example", 1459468800, 1459555199, "5065427c-23d3"),
            "a.example!b.example!1459468800!1459555199!5065427c23d3.json.gz");
  EXPECT_EQ(report_filename("a.example", "b.example", 1, 2, "--"), "a.example!b.example!1!2.json.gz");
}

std::string base64_decode(std::string_view s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    const int v = val(c);
    if (v < 0) {
      ADD_FAILURE() << "not base64: " << static_cast<int>(c);
      return {};
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

TEST(TlsRptReport, Base64) {
  EXPECT_EQ(base64_encode("", 0), "");
  EXPECT_EQ(base64_encode("f", 0), "Zg==");
  EXPECT_EQ(base64_encode("fo", 0), "Zm8=");
  EXPECT_EQ(base64_encode("foo", 0), "Zm9v");
  EXPECT_EQ(base64_encode("foobar", 0), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("foobar", 4), "Zm9v\r\nYmFy\r\n");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  EXPECT_EQ(base64_decode(base64_encode(all, 0)), all);
}

std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const size_t i = s.find(sep, pos);
    if (i == std::string::npos) {
      out.push_back(s.substr(pos));
      return out;
    }
    out.push_back(s.substr(pos, i - pos));
    pos = i + sep.size();
  }
}

// Unfolded header fields by lower-case name, and the raw lines.
std::multimap<std::string, std::string> headers_of(const std::string& block, std::vector<std::string>* lines) {
  std::multimap<std::string, std::string> out;
  *lines = split(block, "\r\n");
  std::string name, value;
  auto flush = [&] {
    while (!value.empty() && (value[0] == ' ' || value[0] == '\t')) value.erase(0, 1);  // FWS after the colon
    if (!name.empty()) out.emplace(name, value);
    name.clear();
    value.clear();
  };
  for (const std::string& line : *lines) {
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      value += line;  // unfolding: remove the CRLF only
      continue;
    }
    flush();
    const size_t colon = line.find(':');
    EXPECT_NE(colon, std::string::npos) << line;
    if (colon == std::string::npos) continue;
    for (size_t i = 0; i < colon; ++i) name += static_cast<char>(std::tolower(static_cast<unsigned char>(line[i])));
    value = line.substr(colon + 1);
  }
  flush();
  return out;
}

std::string only(const std::multimap<std::string, std::string>& h, const std::string& name) {
  EXPECT_EQ(h.count(name), 1u) << name;
  const auto it = h.find(name);
  return it == h.end() ? std::string() : it->second;
}

TEST(TlsRptMail, MessageIsWellFormed) {
  const Report r = rfc_report();
  MailOptions o;
  o.from = "tlsrpt-noreply@mx.company-x.example";
  o.to = "tlsrpt@company-y.example";
  o.submitter = "mx.company-x.example";
  o.message_id_domain = "mx.company-x.example";
  o.date = 1459562400;  // Sat, 02 Apr 2016 02:00:00 +0000
  o.unique_id = "0001";
  const std::string m = mail_message(r, o);

  // CRLF everywhere: no bare LF, no bare CR, ends with CRLF.
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') {
      ASSERT_TRUE(i > 0 && m[i - 1] == '\r') << "bare LF at " << i;
    }
    if (m[i] == '\r') {
      ASSERT_TRUE(i + 1 < m.size() && m[i + 1] == '\n') << "bare CR at " << i;
    }
  }
  ASSERT_TRUE(m.ends_with("\r\n"));

  const size_t hdr_end = m.find("\r\n\r\n");
  ASSERT_NE(hdr_end, std::string::npos);
  std::vector<std::string> lines;
  const auto h = headers_of(m.substr(0, hdr_end), &lines);
  for (const std::string& line : lines) EXPECT_LE(line.size(), 78u) << line;

  EXPECT_EQ(only(h, "from"), o.from);
  EXPECT_EQ(only(h, "to"), o.to);
  EXPECT_EQ(only(h, "date"), "Sat, 02 Apr 2016 02:00:00 +0000");
  EXPECT_EQ(only(h, "message-id"), "<tlsrpt.5065427c-23d3-47ca-b6e0-946ea0e8c4be.1459562400@mx.company-x.example>");
  EXPECT_EQ(only(h, "subject"),
            "Report Domain: company-y.example Submitter: mx.company-x.example "
            "Report-ID: <5065427c-23d3-47ca-b6e0-946ea0e8c4be@mx.company-x.example>");
  EXPECT_EQ(only(h, "tls-report-domain"), "company-y.example");
  EXPECT_EQ(only(h, "tls-report-submitter"), "mx.company-x.example");
  EXPECT_EQ(only(h, "mime-version"), "1.0");
  const std::string ctype = only(h, "content-type");
  ASSERT_EQ(ctype.rfind("multipart/report; report-type=\"tlsrpt\";", 0), 0u) << ctype;
  const size_t b = ctype.find("boundary=\"");
  ASSERT_NE(b, std::string::npos);
  const std::string boundary = ctype.substr(b + 10, ctype.find('"', b + 10) - (b + 10));
  ASSERT_FALSE(boundary.empty());
  EXPECT_LE(boundary.size(), 70u);  // RFC 2046 §5.1.1

  // Body: preamble, two parts, the close delimiter last.
  const std::string body = m.substr(hdr_end + 4);
  const std::string delim = "\r\n--" + boundary;
  ASSERT_TRUE(body.ends_with(delim + "--\r\n"));
  const auto pieces = split("\r\n" + body, delim);  // the first delimiter may start the body's first line
  ASSERT_EQ(pieces.size(), 4u);                     // preamble, part 1, part 2, "--\r\n"
  EXPECT_EQ(pieces[3], "--\r\n");
  for (size_t i = 1; i <= 2; ++i) ASSERT_TRUE(pieces[i].starts_with("\r\n")) << "delimiter line has trailing text";

  // Part 1: text/plain.
  const std::string p1 = pieces[1].substr(2);
  const size_t p1_end = p1.find("\r\n\r\n");
  ASSERT_NE(p1_end, std::string::npos);
  std::vector<std::string> p1_lines;
  const auto h1 = headers_of(p1.substr(0, p1_end), &p1_lines);
  EXPECT_EQ(only(h1, "content-type").rfind("text/plain", 0), 0u);
  EXPECT_NE(p1.find("mx.company-x.example"), std::string::npos);

  // Part 2: the gzipped report.
  const std::string p2 = pieces[2].substr(2);
  const size_t p2_end = p2.find("\r\n\r\n");
  ASSERT_NE(p2_end, std::string::npos);
  std::vector<std::string> p2_lines;
  const auto h2 = headers_of(p2.substr(0, p2_end), &p2_lines);
  EXPECT_EQ(only(h2, "content-type"), "application/tlsrpt+gzip");
  EXPECT_EQ(only(h2, "content-transfer-encoding"), "base64");
  EXPECT_EQ(only(h2, "content-disposition"),
            "attachment; filename=\"mx.company-x.example!company-y.example!1459468800!1459555199!0001.json.gz\"");
  const std::string b64 = p2.substr(p2_end + 4);
  std::string flat;
  for (const std::string& line : split(b64, "\r\n")) {
    EXPECT_LE(line.size(), 76u);
    flat += line;
  }
  EXPECT_EQ(split(body, boundary).size(), 4u);  // the boundary appears only in the three delimiter lines
  const std::string gz = base64_decode(flat);
  std::string err;
  const auto json = gunzip(gz, 1 << 20, &err);
  ASSERT_TRUE(json) << err;
  EXPECT_EQ(*json, to_json(r));
  const auto back = parse_json(*json, &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(*back, r);
}

TEST(TlsRptMail, LongSubjectFoldsAndHeadersStaySafe) {
  Report r = rfc_report();
  r.report_id = "2016-04-01T00:00:00Z_company-y.example";
  r.policies[0].policy.policy_domain = "a-rather-long-policy-domain-name.subdomain.company-y.example";
  MailOptions o;
  o.from = "tlsrpt@mx.example\r\nBcc: victim@example.org";  // no header injection
  o.to = "tlsrpt@company-y.example";
  o.submitter = "mx-cluster-7.company-x.example";
  o.message_id_domain = "mx.example";
  o.date = 0;
  const std::string m = mail_message(r, o);
  const size_t hdr_end = m.find("\r\n\r\n");
  std::vector<std::string> lines;
  const auto h = headers_of(m.substr(0, hdr_end), &lines);
  for (const std::string& line : lines) EXPECT_LE(line.size(), 78u) << line;
  EXPECT_EQ(h.count("bcc"), 0u);
  EXPECT_EQ(only(h, "date"), "Thu, 01 Jan 1970 00:00:00 +0000");
  // ':' is not allowed in a msg-id's left part: replaced, the Subject stays parseable.
  EXPECT_EQ(only(h, "subject"),
            "Report Domain: a-rather-long-policy-domain-name.subdomain.company-y.example "
            "Submitter: mx-cluster-7.company-x.example "
            "Report-ID: <2016-04-01T00.00.00Z_company-y.example@mx-cluster-7.company-x.example>");
  EXPECT_GT(lines.size(), 10u);  // the Subject was folded
  // A report-id that is already a msg-id is kept.
  r.report_id = "735ff.e317+bf22029@example.net";
  const std::string m2 = mail_message(r, o);
  const auto h2 = headers_of(m2.substr(0, m2.find("\r\n\r\n")), &lines);
  EXPECT_NE(only(h2, "subject").find("Report-ID: <735ff.e317+bf22029@example.net>"), std::string::npos);
}

TEST(TlsRptReport, HttpsBody) {
  EXPECT_EQ(https_content_type(), "application/tlsrpt+gzip");
  const Report r = rfc_report();
  std::string err;
  const auto json = gunzip(https_body(r), 1 << 20, &err);
  ASSERT_TRUE(json) << err;
  EXPECT_EQ(*json, to_json(r));
}

}  // namespace
}  // namespace mxedge::tlsrpt
