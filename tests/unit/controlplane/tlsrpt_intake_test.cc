// Inbound TLS-RPT mail (controlplane/tlsrpt/intake): the report found in a received message — the
// RFC 8460 Appendix B example wrapped exactly as mail_message() mails it (with the Received: header the
// gateway prepends), a json attachment, nesting, single-part messages, header folding and quoting —
// and every way a report is rejected, each with an error that says why.
#include <gtest/gtest.h>

#include "tests/unit/support/rfc8460_example.h"

#include <string>

#include "controlplane/tlsrpt/intake.h"
#include "controlplane/tlsrpt/report.h"

namespace mxedge::tlsrpt {
namespace {

constexpr const char* kRfcExample = test::kRfc8460Example;

Report rfc_report() {
  std::string err;
  auto r = parse_json(kRfcExample, &err);
  EXPECT_TRUE(r.has_value()) << err;
  return r.value_or(Report{});
}

MailOptions options() {
  MailOptions o;
  o.from = "tlsrpt-noreply@mx.company-x.example";
  o.to = "tlsrpt@company-y.example";
  o.submitter = "mx.company-x.example";
  o.message_id_domain = "mx.company-x.example";
  o.date = 1459562400;
  return o;
}

const char* kReceived =
    "Received: from mx.company-x.example (mx.company-x.example [192.0.2.1])\r\n"
    "\tby gw.company-y.example (mxedge) with ESMTPS id Q1A2B3C4D5\r\n"
    "\tfor <tlsrpt@company-y.example>; Sat, 02 Apr 2016 02:00:01 +0000\r\n";

// A multipart/report with a text part and `part` (headers and body, CRLF), boundary "b1".
std::string wrap(const std::string& part, const std::string& extra_headers = "") {
  return std::string(kReceived) + "From: reporter@company-x.example\r\nSubject: Report Domain: company-y.example\r\n" +
         "TLS-Report-Domain: company-y.example\r\nTLS-Report-Submitter: company-x.example\r\n" + extra_headers +
         "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b1\"\r\n\r\n"
         "preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThis is a report.\r\n--b1\r\n" +
         part + "\r\n--b1--\r\nepilogue\r\n";
}

std::string gzip_part(const std::string& payload) {
  return "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n"
         "Content-Disposition: attachment; filename=\"x.json.gz\"\r\n\r\n" + base64_encode(gzip(payload), 76);
}

TEST(TlsRptIntake, RfcExampleAsMailed) {
  const std::string m = std::string(kReceived) + mail_message(rfc_report(), options());
  const ReceivedReport r = extract_report(m);
  ASSERT_TRUE(r.report) << r.error;
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(*r.report, rfc_report());
  EXPECT_EQ(r.report->organization_name, "Company-X");
  EXPECT_EQ(r.report->report_id, "5065427c-23d3-47ca-b6e0-946ea0e8c4be");
  EXPECT_EQ(r.report->policies.at(0).summary.total_successful_session_count, 5326u);
  EXPECT_EQ(r.report->policies.at(0).summary.total_failure_session_count, 303u);
  EXPECT_EQ(r.from, "tlsrpt-noreply@mx.company-x.example");
  EXPECT_EQ(r.report_domain, "company-y.example");
  EXPECT_EQ(r.report_submitter, "mx.company-x.example");
  // The Subject is folded by mail_message; unfolding keeps the whitespace of the continuation.
  EXPECT_EQ(r.subject,
            "Report Domain: company-y.example Submitter: mx.company-x.example Report-ID: "
            "<5065427c-23d3-47ca-b6e0-946ea0e8c4be@mx.company-x.example>");
  EXPECT_TRUE(r.message_id.starts_with("<tlsrpt.")) << r.message_id;
  EXPECT_EQ(r.content_type, "application/tlsrpt+gzip");
}

TEST(TlsRptIntake, BareLfLineEndingsToo) {
  std::string m = mail_message(rfc_report(), options());
  std::string lf;
  for (char c : m)
    if (c != '\r') lf.push_back(c);
  const ReceivedReport r = extract_report(lf);
  ASSERT_TRUE(r.report) << r.error;
  EXPECT_EQ(*r.report, rfc_report());
}

TEST(TlsRptIntake, JsonAttachment) {
  const std::string part = "Content-Type: application/tlsrpt+json\r\n\r\n" + to_json(rfc_report(), 2);
  const ReceivedReport r = extract_report(wrap(part));
  ASSERT_TRUE(r.report) << r.error;
  EXPECT_EQ(*r.report, rfc_report());
  EXPECT_EQ(r.content_type, "application/tlsrpt+json");
  EXPECT_EQ(r.from, "reporter@company-x.example");
  EXPECT_EQ(r.report_domain, "company-y.example");
  EXPECT_EQ(r.report_submitter, "company-x.example");

  // base64 and quoted-printable json, and gzip mislabelled as json.
  const std::string b64 = "Content-Type: application/tlsrpt+json\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                          base64_encode(to_json(rfc_report()), 60);
  ASSERT_TRUE(extract_report(wrap(b64)).report);
  const std::string qp = "Content-Type: application/tlsrpt+json\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
                         std::string(R"({"organization-name": "Company=3DX", "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-=)") +
                         "\r\n" + R"(datetime": "2016-04-01T23:59:59Z"}, "contact-info": "c", "report-id": "r", "policies": []})";
  const ReceivedReport q = extract_report(wrap(qp));
  ASSERT_TRUE(q.report) << q.error;
  EXPECT_EQ(q.report->organization_name, "Company=X");
  const std::string mislabelled = "Content-Type: application/tlsrpt+json\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                                  base64_encode(gzip(to_json(rfc_report())));
  ASSERT_TRUE(extract_report(wrap(mislabelled)).report);
}

TEST(TlsRptIntake, HeadersFoldedCaseInsensitiveQuotedBoundary) {
  const std::string json = to_json(rfc_report());
  const std::string m = std::string(kReceived) +
                        "fROM:\r\n  \"Reporter\" <r@x.example>\r\nsubject : hello\r\n\tworld\r\n"
                        "tls-report-DOMAIN: company-y.example\r\n"
                        "MIME-Version: 1.0\r\n"
                        "CONTENT-TYPE: Multipart/Report;\r\n report-type=tlsrpt;\r\n\tBOUNDARY=\"=_a;b \\\"c\\\"\"\r\n\r\n"
                        "--=_a;b \"c\"\r\n"
                        "content-type: APPLICATION/TLSRPT+GZIP; name=\"r.json.gz\"\r\n"
                        "Content-Transfer-Encoding: BASE64\r\n\r\n" +
                        base64_encode(gzip(json), 40) + "--=_a;b \"c\"--  \r\n";
  const ReceivedReport r = extract_report(m);
  ASSERT_TRUE(r.report) << r.error;
  EXPECT_EQ(r.from, "\"Reporter\" <r@x.example>");
  EXPECT_EQ(r.subject, "hello world");  // unfolded; the continuation's HT shown as a space
  EXPECT_EQ(r.report_domain, "company-y.example");
}

TEST(TlsRptIntake, LongerBoundaryWithOurPrefixIsNotADelimiter) {
  const std::string m = std::string(kReceived) +
                        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
                        "--b\r\nContent-Type: text/plain\r\n\r\n--bx is not a delimiter\r\n"
                        "--b\r\n" + gzip_part(to_json(rfc_report())) + "\r\n--b--\r\n";
  const ReceivedReport r = extract_report(m);
  ASSERT_TRUE(r.report) << r.error;
}

TEST(TlsRptIntake, NestedOneLevel) {
  const std::string inner = "Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
                            "--inner\r\nContent-Type: text/plain\r\n\r\nhi\r\n--inner\r\n" +
                            gzip_part(to_json(rfc_report())) + "\r\n--inner--\r\n";
  const ReceivedReport r = extract_report(wrap(inner));
  ASSERT_TRUE(r.report) << r.error;
  EXPECT_EQ(*r.report, rfc_report());

  // Two levels down is not looked at.
  const std::string deeper = "Content-Type: multipart/mixed; boundary=outer2\r\n\r\n--outer2\r\n" + inner + "\r\n--outer2--\r\n";
  const ReceivedReport d = extract_report(wrap(deeper));
  EXPECT_FALSE(d.report);
  EXPECT_EQ(d.error, "no application/tlsrpt part (top-level type multipart/report)");
}

TEST(TlsRptIntake, SinglePartMessage) {
  const std::string gz = std::string(kReceived) +
                         "From: a@b.example\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                         base64_encode(gzip(to_json(rfc_report())));
  ASSERT_TRUE(extract_report(gz).report);
  const std::string js = std::string(kReceived) + "Content-Type: application/tlsrpt+json; charset=utf-8\r\n\r\n" + to_json(rfc_report());
  const ReceivedReport r = extract_report(js);
  ASSERT_TRUE(r.report) << r.error;
  EXPECT_EQ(r.content_type, "application/tlsrpt+json");
  // Binary gzip (8bit content) as the body.
  const std::string bin = std::string(kReceived) + "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
                          gzip(to_json(rfc_report()));
  ASSERT_TRUE(extract_report(bin).report);
}

TEST(TlsRptIntake, TruncatedAndCorruptGzip) {
  std::string gz = gzip(to_json(rfc_report()));
  const ReceivedReport t = extract_report(wrap("Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                                              base64_encode(gz.substr(0, gz.size() / 2))));
  EXPECT_FALSE(t.report);
  EXPECT_EQ(t.error, "gzip: truncated gzip data");

  std::string bad = gz;
  for (size_t i = 12; i < 40 && i < bad.size(); ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
  const ReceivedReport c = extract_report(wrap("Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                                               base64_encode(bad)));
  EXPECT_FALSE(c.report);
  EXPECT_TRUE(c.error.starts_with("gzip: ")) << c.error;

  const ReceivedReport n = extract_report(wrap("Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                                               base64_encode(to_json(rfc_report()).substr(1))));
  EXPECT_EQ(n.error, "gzip: not gzip data (no gzip header)");
}

TEST(TlsRptIntake, GzipBombOverTheBound) {
  const std::string big(20 << 20, ' ');  // 20 MiB of spaces: valid JSON whitespace, ~20 KiB gzipped
  const std::string bomb = gzip("{\"organization-name\":\"x\"" + big + "}");
  ASSERT_LT(bomb.size(), 100u << 10);
  const ReceivedReport r = extract_report(wrap("Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                                              base64_encode(bomb)));
  EXPECT_FALSE(r.report);
  EXPECT_EQ(r.error, "gzip: decompressed size exceeds 16777216 bytes");
  ExtractOptions small;
  small.max_json = 1000;
  EXPECT_EQ(extract_report(wrap(gzip_part(to_json(rfc_report()))), small).error, "gzip: decompressed size exceeds 1000 bytes");
  EXPECT_EQ(extract_report(wrap("Content-Type: application/tlsrpt+json\r\n\r\n" + to_json(rfc_report())), small).error,
            "report JSON exceeds 1000 bytes");
}

TEST(TlsRptIntake, BadJsonNamesTheMember) {
  std::string json = to_json(rfc_report());
  const std::string needle = "\"total-failure-session-count\":303";
  const size_t at = json.find(needle);
  ASSERT_NE(at, std::string::npos) << json;
  json.replace(at, needle.size(), "\"total-failure-session-count\":-1");
  const ReceivedReport r = extract_report(wrap(gzip_part(json)));
  EXPECT_FALSE(r.report);
  EXPECT_EQ(r.error, "policies[0].summary.total-failure-session-count: not a non-negative integer");
  EXPECT_EQ(r.report_domain, "company-y.example");  // the headers are kept for the rejected report
  const ReceivedReport g = extract_report(wrap(gzip_part("this is not json")));
  EXPECT_FALSE(g.report);
  EXPECT_FALSE(g.error.empty());
}

TEST(TlsRptIntake, NoReportPart) {
  const ReceivedReport plain = extract_report(std::string(kReceived) + "From: a@b\r\nSubject: hi\r\n\r\nhello\r\n");
  EXPECT_FALSE(plain.report);
  EXPECT_EQ(plain.error, "no application/tlsrpt part (top-level type text/plain)");
  EXPECT_EQ(plain.subject, "hi");
  const ReceivedReport mixed = extract_report(wrap("Content-Type: application/json\r\n\r\n" + to_json(rfc_report())));
  EXPECT_EQ(mixed.error, "no application/tlsrpt part (top-level type multipart/report)");
  const ReceivedReport noboundary = extract_report(std::string(kReceived) + "Content-Type: multipart/report\r\n\r\n--x\r\n");
  EXPECT_EQ(noboundary.error, "no application/tlsrpt part (top-level type multipart/report): multipart/report without a usable boundary parameter");
  EXPECT_EQ(extract_report("").error, "no application/tlsrpt part (top-level type text/plain)");
}

TEST(TlsRptIntake, InvalidBase64) {
  const std::string part = "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\nH4sIAAAA*AAA\r\n";
  const ReceivedReport r = extract_report(wrap(part));
  EXPECT_FALSE(r.report);
  EXPECT_EQ(r.error, "attachment is not valid base64 (invalid character 0x2a at octet 8)");
  const ReceivedReport u = extract_report(wrap("Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin"));
  EXPECT_EQ(u.error, "unsupported Content-Transfer-Encoding 'x-uuencode'");
}

TEST(TlsRptIntake, Base64Decoder) {
  std::string e;
  EXPECT_EQ(base64_decode("", &e), "");
  EXPECT_EQ(base64_decode("Zm9v", &e), "foo");
  EXPECT_EQ(base64_decode("Zm9vYg==", &e), "foob");
  EXPECT_EQ(base64_decode("Zm9vYmE=", &e), "fooba");
  EXPECT_EQ(base64_decode("Zm9vYg", &e), "foob");  // missing padding accepted
  EXPECT_EQ(base64_decode(" Zm9v\r\n\tYmFy \r\n", &e), "foobar");
  EXPECT_FALSE(base64_decode("Zm9vY", &e));
  EXPECT_EQ(e, "truncated (a dangling character at the end)");
  EXPECT_FALSE(base64_decode("Zm9vYg==Zm9v", &e));
  EXPECT_EQ(e, "data after the '=' padding at octet 8");
  EXPECT_FALSE(base64_decode("Zm9v=", &e));
  EXPECT_FALSE(base64_decode("Zg=", &e));
  EXPECT_EQ(e, "incomplete '=' padding");
  EXPECT_FALSE(base64_decode("Zg===", &e));
  EXPECT_FALSE(base64_decode("Zm9v-_", &e));
  for (int n = 0; n < 40; ++n) {
    std::string data;
    for (int i = 0; i < n; ++i) data.push_back(static_cast<char>(i * 37 + n));
    EXPECT_EQ(base64_decode(base64_encode(data, 7), &e), data) << n;
  }
}

TEST(TlsRptIntake, ContentTypeParser) {
  auto ct = parse_content_type(" Multipart/Report ; Report-Type = \"tlsrpt\" ;boundary=abc ; x=\"a\\\"b\"");
  ASSERT_TRUE(ct);
  EXPECT_EQ(ct->type, "multipart/report");
  EXPECT_EQ(ct->params.at("report-type"), "tlsrpt");
  EXPECT_EQ(ct->params.at("boundary"), "abc");
  EXPECT_EQ(ct->params.at("x"), "a\"b");
  EXPECT_FALSE(parse_content_type("text"));
  EXPECT_FALSE(parse_content_type(""));
  EXPECT_FALSE(parse_content_type("/plain"));
  auto broken = parse_content_type("text/plain; charset=\"unterminated");
  ASSERT_TRUE(broken);
  EXPECT_TRUE(broken->params.empty());
}

TEST(TlsRptIntake, HeaderValuesAreCleanUtf8) {
  const std::string m = std::string("From: \xff\xfe <a@b>\x01\r\nSubject: caf\xc3\xa9 \xed\xa0\x80 ok\r\n\r\n");
  const ReceivedReport r = extract_report(m);
  EXPECT_EQ(r.from, "\xef\xbf\xbd\xef\xbf\xbd <a@b>");  // the control character became a space, trimmed
  EXPECT_EQ(r.subject, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd ok");
  EXPECT_EQ(clean_text(std::string(2000, 'a')).size(), 998u);
  EXPECT_EQ(clean_text("\xc3\xa9\xc3\xa9", 3), "\xc3\xa9");
}

TEST(TlsRptIntake, Garbage) {
  for (const std::string& g : {std::string("\r\n\r\n\r\n"), std::string("--\r\n--"), std::string(1000, '\n'),
                              std::string("Content-Type: multipart/x; boundary=a\r\n\r\n--a--"),
                              std::string("Content-Type: multipart/x; boundary=a\r\n\r\n--a\r\n--a\r\n--a"),
                              std::string("Content-Type: application/tlsrpt+gzip\r\n\r\n"),
                              std::string("Content-Type: application/tlsrpt+json\r\n\r\n{")}) {
    const ReceivedReport r = extract_report(g);
    EXPECT_FALSE(r.report);
    EXPECT_FALSE(r.error.empty());
  }
}

}  // namespace
}  // namespace mxedge::tlsrpt
