#include "policy/mta_sts.h"

#include <gtest/gtest.h>

namespace mxedge::policy {
namespace {

std::optional<StsPolicy> parse(std::string_view body, StsError* e) { return parse_sts_policy(body, e); }

TEST(StsPolicyTest, ValidPoliciesInEachMode) {
  StsError e;
  auto p = parse("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.Example.NET\nmax_age: 86400\n", &e);
  ASSERT_TRUE(p) << e.to_string();
  EXPECT_EQ(p->mode, StsMode::kEnforce);
  EXPECT_EQ(p->max_age, 86400u);
  EXPECT_EQ(p->mx, (std::vector<std::string>{"mail.example.com", "*.example.net"}));

  p = parse("version: STSv1\r\nmode: testing\r\nmx: mx.example.org\r\nmax_age: 0", &e);  // CRLF, no final newline
  ASSERT_TRUE(p) << e.to_string();
  EXPECT_EQ(p->mode, StsMode::kTesting);
  EXPECT_EQ(p->max_age, 0u);

  p = parse("version:STSv1\nmode:\tnone  \nmax_age:   31557600\n", &e);  // none needs no mx; optional WSP
  ASSERT_TRUE(p) << e.to_string();
  EXPECT_EQ(p->mode, StsMode::kNone);
  EXPECT_EQ(p->max_age, 31557600u);
}

TEST(StsPolicyTest, FirstOccurrenceWinsExceptMxAndUnknownKeysAreIgnored) {
  StsError e;
  auto p = parse("version: STSv1\nmode: testing\nmode: enforce\nmax_age: 600\nmax_age: 99999999999\n"
                 "mx: a.example\nmx: b.example\nx-vendor.flag: some value\n",
                 &e);
  ASSERT_TRUE(p) << e.to_string();
  EXPECT_EQ(p->mode, StsMode::kTesting);
  EXPECT_EQ(p->max_age, 600u);
  EXPECT_EQ(p->mx.size(), 2u);
  EXPECT_EQ(p->extensions, 1u);
}

struct Bad {
  const char* body;
  size_t line;
  const char* message;
};

class StsPolicyInvalid : public ::testing::TestWithParam<Bad> {};

TEST_P(StsPolicyInvalid, IsRejectedWithLineAndReason) {
  StsError e;
  EXPECT_FALSE(parse(GetParam().body, &e)) << GetParam().body;
  EXPECT_EQ(e.line, GetParam().line) << e.to_string();
  EXPECT_NE(e.message.find(GetParam().message), std::string::npos) << e.to_string();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, StsPolicyInvalid,
    ::testing::Values(
        Bad{"", 0, "empty policy"},
        Bad{"mode: enforce\nmx: a.example\nmax_age: 5\n", 0, "version: STSv1 is missing"},
        Bad{"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 5\n", 1, "version must be STSv1"},
        Bad{"version: stsv1\nmode: enforce\nmx: a.example\nmax_age: 5\n", 1, "version must be STSv1"},
        Bad{"version: STSv1\nmode: enforce\nmax_age: 5\n", 0, "mode enforce needs at least one mx"},
        Bad{"version: STSv1\nmode: testing\nmax_age: 5\n", 0, "mode testing needs at least one mx"},
        Bad{"version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 5\n", 2, "mode must be enforce, testing or none"},
        Bad{"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 5\n", 2, "mode must be"},
        Bad{"version: STSv1\nmx: a.example\nmax_age: 5\n", 0, "mode is missing"},
        Bad{"version: STSv1\nmode: enforce\nmx: a.example\n", 0, "max_age is missing"},
        Bad{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", 4, "exceeds 31557600"},
        Bad{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 00000000001\n", 4, "1 to 10 digits"},
        Bad{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", 4, "number of seconds"},
        Bad{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d\n", 4, "number of seconds"},
        Bad{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age:\n", 4, "1 to 10 digits"},
        Bad{"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 5\n", 3, "not a domain name"},
        Bad{"version: STSv1\nmode: enforce\nmx: mail.*.example\nmax_age: 5\n", 3, "not a domain name"},
        Bad{"version: STSv1\nmode: enforce\nmx: .example\nmax_age: 5\n", 3, "not a domain name"},
        Bad{"version: STSv1\nmode: enforce\nmx: *example.com\nmax_age: 5\n", 3, "not a domain name"},
        Bad{"version: STSv1\nmode: enforce\nmx: -bad.example\nmax_age: 5\n", 3, "not a domain name"},
        Bad{"version: STSv1\nmode: enforce\nmx: m\xc3\xbcnchen.example\nmax_age: 5\n", 3, "A-label form"},
        Bad{"version: STSv1\nmode: enforce\nmx: a.example\n\nmax_age: 5\n", 4, "empty line"},
        Bad{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 5\n\n", 5, "empty line"},
        Bad{"version: STSv1\nmode enforce\nmx: a.example\nmax_age: 5\n", 2, "expected 'key: value'"},
        Bad{"version: STSv1\nmode : enforce\nmx: a.example\nmax_age: 5\n", 2, "invalid key"},
        Bad{"version: STSv1\n mode: enforce\nmx: a.example\nmax_age: 5\n", 2, "invalid key"},
        Bad{"version: STSv1\rmode: enforce\nmx: a.example\nmax_age: 5\n", 1, "stray carriage return"},
        Bad{"<html><body>404</body></html>", 1, "expected 'key: value'"},
        Bad{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 5\nx-ext: \x01\n", 5, "invalid value for 'x-ext'"}));

TEST(StsTxtTest, IdFromTheOneStsRecord) {
  std::string err;
  EXPECT_EQ(parse_sts_txt({"v=STSv1; id=20160831085700Z;"}, &err), "20160831085700Z");
  EXPECT_EQ(parse_sts_txt({"v=spf1 -all", "v=STSv1;id=abc", "google-site-verification=x"}, &err), "abc");
  EXPECT_EQ(parse_sts_txt({"v=STSv1 ;  id=abc ; ext=1.2 ;"}, &err), "abc");
  EXPECT_EQ(parse_sts_txt({"v=STSv1; id=" + std::string(32, 'a')}, &err), std::string(32, 'a'));
  // None: no policy, and no error.
  EXPECT_FALSE(parse_sts_txt({"v=spf1 -all", "v=STSv10; id=1"}, &err));
  EXPECT_TRUE(err.empty());
  EXPECT_FALSE(parse_sts_txt({}, &err));
  EXPECT_TRUE(err.empty());
}

TEST(StsTxtTest, InvalidRecordsAreErrors) {
  std::string err;
  EXPECT_FALSE(parse_sts_txt({"v=STSv1; id=1", "v=STSv1; id=2"}, &err));
  EXPECT_EQ(err, "more than one v=STSv1 TXT record");
  EXPECT_FALSE(parse_sts_txt({"v=STSv1;"}, &err));
  EXPECT_NE(err.find("id is missing"), std::string::npos) << err;
  EXPECT_FALSE(parse_sts_txt({"v=STSv1; id=" + std::string(33, 'a')}, &err));
  EXPECT_NE(err.find("1 to 32"), std::string::npos) << err;
  EXPECT_FALSE(parse_sts_txt({"v=STSv1; id=2016-08-31"}, &err));
  EXPECT_NE(err.find("letters and digits"), std::string::npos) << err;
  EXPECT_FALSE(parse_sts_txt({"v=STSv1; id="}, &err));
  EXPECT_FALSE(parse_sts_txt({"v=STSv1 id=abc"}, &err));
  EXPECT_NE(err.find("expected ';'"), std::string::npos) << err;
  EXPECT_FALSE(parse_sts_txt({"v=STSv1; id=a; id=b"}, &err));
  EXPECT_NE(err.find("twice"), std::string::npos) << err;
  EXPECT_FALSE(parse_sts_txt({"v=STSv1; id=a; bogus"}, &err));
}

TEST(StsMxTest, WildcardMatchesExactlyOneLeftmostLabel) {
  EXPECT_TRUE(sts_mx_matches("*.example.com", "mx1.example.com"));
  EXPECT_TRUE(sts_mx_matches("*.example.com", "MX1.Example.COM."));
  EXPECT_FALSE(sts_mx_matches("*.example.com", "a.b.example.com"));  // not any depth
  EXPECT_FALSE(sts_mx_matches("*.example.com", "example.com"));
  EXPECT_FALSE(sts_mx_matches("*.example.com", ".example.com"));
  EXPECT_FALSE(sts_mx_matches("*.example.com", "mx1.badexample.com"));
  EXPECT_TRUE(sts_mx_matches("mail.example.com", "mail.example.com."));
  EXPECT_FALSE(sts_mx_matches("mail.example.com", "x.mail.example.com"));
  EXPECT_TRUE(sts_mx_matches("xn--mnchen-3ya.example", "XN--MNCHEN-3YA.example"));
  StsPolicy p;
  p.mx = {"a.example", "*.b.example"};
  EXPECT_TRUE(sts_policy_allows(p, "x.b.example"));
  EXPECT_FALSE(sts_policy_allows(p, "x.a.example"));
}

TEST(StsMxTest, ALabelDomains) {
  EXPECT_TRUE(is_a_label_domain("xn--mnchen-3ya.example"));
  EXPECT_TRUE(is_a_label_domain("a"));
  EXPECT_FALSE(is_a_label_domain("a..b"));
  EXPECT_FALSE(is_a_label_domain("a.b."));
  EXPECT_FALSE(is_a_label_domain(std::string(64, 'a') + ".example"));
  EXPECT_FALSE(is_a_label_domain("under_score.example"));
}

}  // namespace
}  // namespace mxedge::policy
