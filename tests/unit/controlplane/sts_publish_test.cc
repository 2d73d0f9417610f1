// The gateway's own MTA-STS policy (controlplane/sts_publish): the generated policy text parses with
// the project's strict RFC 8461 parser, its id follows the content, the TXT record parses; the
// `mta_sts_publish:` section's defaults and validation; the Host check of the policy host.
#include "controlplane/sts_publish/sts_publish.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "policy/config_loader.h"
#include "policy/mta_sts.h"

namespace mxedge::sts_publish {
namespace {

const char* kBase = R"(hostname: MX1.Lab.Test
listeners: [{name: smtp, address: "127.0.0.1:2525", tls_mode: none}]
accepted_domains: [lab.test, other.test]
next_hop: {host: 127.0.0.1, port: 2600}
spool: {directory: /tmp/mxedge-spool}
workers: {cores: [0]}
)";

config::LoadResult load(const std::string& extra) { return config::load_config_text(std::string(kBase) + extra, "t.yaml"); }

std::string errors_of(const config::LoadResult& r) { return r.ok() ? std::string() : r.error_text(); }

// Two readable files standing in for a certificate and its key (validation only checks access).
std::string cert_section() {
  const auto dir = std::filesystem::temp_directory_path() / "mxedge-sts-publish-test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "c.pem") << "x";
  std::ofstream(dir / "k.pem") << "x";
  return "  certificates: [{cert_file: " + (dir / "c.pem").string() + ", key_file: " + (dir / "k.pem").string() + "}]\n";
}

TEST(StsPublish, DefaultPolicyParsesStrictly) {
  auto r = load("");
  ASSERT_TRUE(r.ok()) << r.error_text();
  const auto& p = r.config->mta_sts_publish();
  EXPECT_TRUE(p.listen().empty());
  EXPECT_EQ(p.mode(), config::v1::STS_PUBLISH_MODE_TESTING);
  EXPECT_EQ(p.max_age().seconds(), 86400);
  ASSERT_EQ(p.mx_size(), 1);
  EXPECT_EQ(p.mx(0), "mx1.lab.test");  // the hostname, lower case

  const std::string text = policy_text(*r.config);
  EXPECT_EQ(text, "version: STSv1\r\nmode: testing\r\nmx: mx1.lab.test\r\nmax_age: 86400\r\n");
  policy::StsError err;
  auto parsed = policy::parse_sts_policy(text, &err);
  ASSERT_TRUE(parsed) << err.to_string();
  EXPECT_EQ(parsed->mode, policy::StsMode::kTesting);
  EXPECT_EQ(parsed->max_age, 86400u);
  EXPECT_EQ(parsed->mx, std::vector<std::string>{"mx1.lab.test"});
  EXPECT_EQ(parsed->extensions, 0u);
}

TEST(StsPublish, EnforceWithPatternsAndMaxAge) {
  auto r = load("mta_sts_publish:\n  mode: enforce\n  mx: [mx1.lab.test, \"*.MX.Lab.Test.\"]\n");
  ASSERT_TRUE(r.ok()) << r.error_text();
  EXPECT_EQ(r.config->mta_sts_publish().max_age().seconds(), 7 * 86400);  // the enforce default
  policy::StsError err;
  auto parsed = policy::parse_sts_policy(policy_text(*r.config), &err);
  ASSERT_TRUE(parsed) << err.to_string();
  EXPECT_EQ(parsed->mode, policy::StsMode::kEnforce);
  EXPECT_EQ(parsed->max_age, 604800u);
  EXPECT_EQ(parsed->mx, (std::vector<std::string>{"mx1.lab.test", "*.mx.lab.test"}));
  EXPECT_TRUE(policy::sts_policy_allows(*parsed, "a.mx.lab.test"));

  auto top = load("mta_sts_publish: {mode: none, max_age: 31557600s}\n");
  ASSERT_TRUE(top.ok()) << top.error_text();
  parsed = policy::parse_sts_policy(policy_text(*top.config), &err);
  ASSERT_TRUE(parsed) << err.to_string();
  EXPECT_EQ(parsed->mode, policy::StsMode::kNone);
  EXPECT_EQ(parsed->max_age, policy::kStsMaxAge);
}

TEST(StsPublish, IdFollowsTheText) {
  const std::string a = policy_text(policy::StsMode::kTesting, {"mx.lab.test"}, 86400);
  const std::string b = policy_text(policy::StsMode::kEnforce, {"mx.lab.test"}, 86400);
  EXPECT_EQ(policy_id(a), policy_id(a));
  EXPECT_EQ(policy_id(a), policy_id(std::string(a)));
  EXPECT_NE(policy_id(a), policy_id(b));
  EXPECT_NE(policy_id(a), policy_id(policy_text(policy::StsMode::kTesting, {"mx.lab.test"}, 86401)));
  EXPECT_EQ(policy_id(a).size(), 20u);
  // SHA-256("") = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  EXPECT_EQ(policy_id(""), "e3b0c44298fc1c149afb");
}

TEST(StsPublish, TxtRecordParses) {
  const std::string id = policy_id(policy_text(policy::StsMode::kTesting, {"mx.lab.test"}, 86400));
  EXPECT_EQ(txt_record("lab.test", id), "_mta-sts.lab.test. IN TXT \"v=STSv1; id=" + id + ";\"");
  EXPECT_EQ(txt_record("lab.test.", id), txt_record("lab.test", id));
  std::string err;
  auto parsed = policy::parse_sts_txt({txt_value(id)}, &err);
  ASSERT_TRUE(parsed) << err;
  EXPECT_EQ(*parsed, id);
}

TEST(StsPublish, ValidationRejectsBadSettings) {
  const std::string certs = cert_section();
  auto ok = load("mta_sts_publish:\n  listen: \"127.0.0.1:8443\"\n" + certs);
  EXPECT_TRUE(ok.ok()) << ok.error_text();

  auto no_certs = load("mta_sts_publish: {listen: \"127.0.0.1:8443\"}\n");
  EXPECT_NE(errors_of(no_certs).find("needs at least one certificate"), std::string::npos) << errors_of(no_certs);

  auto bad_listen = load("mta_sts_publish:\n  listen: \"localhost:x\"\n" + certs);
  EXPECT_NE(errors_of(bad_listen).find("invalid listen address"), std::string::npos) << errors_of(bad_listen);

  auto bad_mode = load("mta_sts_publish: {mode: strict}\n");
  EXPECT_NE(errors_of(bad_mode).find("expected one of: enforce, testing, none"), std::string::npos) << errors_of(bad_mode);

  auto too_long = load("mta_sts_publish: {max_age: 31557601s}\n");
  EXPECT_NE(errors_of(too_long).find("max_age must be between 1s and 31557600s"), std::string::npos) << errors_of(too_long);
  auto zero = load("mta_sts_publish: {max_age: 0s}\n");
  EXPECT_NE(errors_of(zero).find("max_age must be between"), std::string::npos) << errors_of(zero);

  auto bad_mx = load("mta_sts_publish:\n  listen: \"127.0.0.1:8443\"\n  mx: [\"mx_1.lab.test\", \"*.*.lab.test\"]\n" + certs);
  EXPECT_NE(errors_of(bad_mx).find("invalid mx 'mx_1.lab.test'"), std::string::npos) << errors_of(bad_mx);
  EXPECT_NE(errors_of(bad_mx).find("invalid mx '*.*.lab.test'"), std::string::npos) << errors_of(bad_mx);

  auto missing = load("mta_sts_publish:\n  listen: \"127.0.0.1:8443\"\n  certificates: [{cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}]\n");
  EXPECT_NE(errors_of(missing).find("cannot read certificate file /nonexistent/c.pem"), std::string::npos) << errors_of(missing);
}

TEST(StsPublish, ServedDomainFromHost) {
  const std::vector<std::string> domains{"lab.test", "other.test"};
  EXPECT_EQ(served_domain("mta-sts.lab.test", domains), "lab.test");
  EXPECT_EQ(served_domain("MTA-STS.Other.Test:443", domains), "other.test");
  EXPECT_EQ(served_domain("mta-sts.lab.test.", domains), "lab.test");
  EXPECT_EQ(served_domain("mta-sts.lab.test.:8443", domains), "lab.test");
  EXPECT_FALSE(served_domain("", domains));
  EXPECT_FALSE(served_domain("lab.test", domains));
  EXPECT_FALSE(served_domain("mta-sts.nope.test", domains));
  EXPECT_FALSE(served_domain("x.mta-sts.lab.test", domains));
  EXPECT_FALSE(served_domain("mta-sts.lab.test:x", domains));
  EXPECT_FALSE(served_domain("[::1]:443", domains));
}

}  // namespace
}  // namespace mxedge::sts_publish
