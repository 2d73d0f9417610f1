// Unit tests for REQUIRETLS (RFC 8689) on the data plane: the MAIL FROM parameter, the session's
// advertisement and refusal rules, the streaming "TLS-Required: No" header scanner (DATA and BDAT),
// and which MX hosts of a delivery policy a REQUIRETLS message may use.
#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/smtp/body_reader.h"
#include "dataplane/smtp/server_session.h"
#include "dataplane/smtp/smtp_command.h"
#include "policy/delivery_policy.h"

namespace mxedge {
namespace {

using smtp::ParamError;
using smtp::PathError;

// ---- MAIL FROM parameter -------------------------------------------------------------------------

TEST(RequireTlsParam, Accepted) {
  auto r = smtp::parse_mail_from("FROM:<a@b.test> REQUIRETLS");
  EXPECT_EQ(r.path_error, PathError::kNone);
  EXPECT_EQ(r.param_error, ParamError::kNone);
  EXPECT_TRUE(r.args.requiretls);
  auto lower = smtp::parse_mail_from("FROM:<a@b.test> SIZE=10 requiretls BODY=8BITMIME");
  EXPECT_EQ(lower.param_error, ParamError::kNone);
  EXPECT_TRUE(lower.args.requiretls);
  EXPECT_EQ(*lower.args.size, 10u);
  EXPECT_FALSE(smtp::parse_mail_from("FROM:<a@b.test>").args.requiretls);
}

TEST(RequireTlsParam, ValueIsASyntaxError) {
  for (const char* args : {"FROM:<a@b.test> REQUIRETLS=YES", "FROM:<a@b.test> REQUIRETLS=x"}) {
    auto r = smtp::parse_mail_from(args);
    EXPECT_EQ(r.param_error, ParamError::kSyntax) << args;
    EXPECT_FALSE(r.args.requiretls) << args;
  }
  // "REQUIRETLS=" (empty value) does not even split as a parameter.
  EXPECT_EQ(smtp::parse_mail_from("FROM:<a@b.test> REQUIRETLS=").param_error, ParamError::kSyntax);
}

TEST(RequireTlsParam, Duplicate) {
  auto r = smtp::parse_mail_from("FROM:<a@b.test> REQUIRETLS RequireTLS");
  EXPECT_EQ(r.param_error, ParamError::kDuplicate);
  EXPECT_EQ(r.bad_param, "RequireTLS");
}

TEST(RequireTlsParam, NotAnRcptParameter) {
  EXPECT_EQ(smtp::parse_rcpt_to("TO:<a@b.test> REQUIRETLS").param_error, ParamError::kUnsupported);
}

// ---- header scanner ------------------------------------------------------------------------------

class StringSink : public smtp::BodySink {
 public:
  void append(std::string_view d) override { data.append(d); }
  std::string data;
};

// Feeds `content` in pieces of `step` octets (0: at once) and returns whether the field was seen.
bool scan(std::string_view content, size_t step = 0, std::string* passed = nullptr) {
  StringSink sink;
  smtp::HeaderScanner s(&sink);
  if (step == 0) {
    s.append(content);
  } else {
    for (size_t i = 0; i < content.size(); i += step) s.append(content.substr(i, step));
  }
  s.finish();
  if (passed != nullptr) *passed = sink.data;
  return s.tls_required_no();
}

TEST(HeaderScanner, FindsTheField) {
  EXPECT_TRUE(scan("Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"));
  EXPECT_TRUE(scan("tls-required: no\r\n\r\n"));
  EXPECT_TRUE(scan("TLS-Required:No\r\n\r\n"));
  EXPECT_TRUE(scan("TLS-Required:   nO   \r\nX: y\r\n\r\n"));
  EXPECT_TRUE(scan("TLS-Required\t: No\r\n\r\n"));  // obsolete WSP before the colon
  EXPECT_TRUE(scan("TLS-Required: No\r\n"));        // header only, no body, no empty line
  EXPECT_TRUE(scan("TLS-Required: No"));            // ... not even a final CRLF
}

TEST(HeaderScanner, OtherValuesAndNamesAreNot) {
  EXPECT_FALSE(scan("TLS-Required: Yes\r\n\r\n"));
  EXPECT_FALSE(scan("TLS-Required: No thanks\r\n\r\n"));
  EXPECT_FALSE(scan("TLS-Required: Not\r\n\r\n"));
  EXPECT_FALSE(scan("X-TLS-Required: No\r\n\r\n"));
  EXPECT_FALSE(scan("TLS-Required-X: No\r\n\r\n"));
  EXPECT_FALSE(scan("Subject: TLS-Required: No\r\n\r\n"));
  EXPECT_FALSE(scan("TLS-Required No\r\n\r\n"));
  EXPECT_FALSE(scan("TLS-Required: " + std::string(400, ' ') + "No\r\n\r\n"));  // longer than a field can be
}

TEST(HeaderScanner, FoldedFields) {
  EXPECT_TRUE(scan("TLS-Required:\r\n No\r\n\r\n"));
  EXPECT_TRUE(scan("TLS-Required:\r\n\t No \r\nSubject: x\r\n\r\n"));
  // A continuation of another field does not make it ours.
  EXPECT_FALSE(scan("Subject: x\r\n TLS-Required: No\r\n\r\n"));
  // A folded value that continues past "No" is another value.
  EXPECT_FALSE(scan("TLS-Required: No\r\n more\r\n\r\n"));
}

TEST(HeaderScanner, IgnoredInTheBody) {
  EXPECT_FALSE(scan("Subject: x\r\n\r\nTLS-Required: No\r\n"));
  EXPECT_FALSE(scan("\r\nTLS-Required: No\r\n"));  // no header at all: the body starts at once
  // The empty line ends the header even when the field is the last one before it... but a field
  // after it is body text.
  EXPECT_TRUE(scan("TLS-Required: No\r\n\r\nTLS-Required: Yes\r\n"));
}

TEST(HeaderScanner, SplitAcrossChunksAndPassesEverythingOn) {
  const std::string content = "Received: by x\r\nSubject: hi\r\nTLS-Required:\r\n  No\r\n\r\nbody line\r\n.. more\r\n";
  for (size_t step = 1; step <= 7; ++step) {
    std::string passed;
    EXPECT_TRUE(scan(content, step, &passed)) << step;
    EXPECT_EQ(passed, content) << step;
  }
  const std::string in_body = "Subject: hi\r\n\r\nTLS-Required: No\r\n";
  for (size_t step = 1; step <= 5; ++step) EXPECT_FALSE(scan(in_body, step)) << step;
}

// ---- the session ---------------------------------------------------------------------------------

class MemorySink : public smtp::BodySink {
 public:
  explicit MemorySink(std::string* out) : out_(out) {}
  void append(std::string_view d) override { out_->append(d); }

 private:
  std::string* out_;
};

class FakeHost : public smtp::SessionHost {
 public:
  std::string new_queue_id() override { return "QID" + std::to_string(++n); }
  std::unique_ptr<smtp::BodySink> open_body(const std::string&) override {
    bodies.emplace_back();
    return std::make_unique<MemorySink>(&bodies.back());
  }
  bool spool_has_room() override { return true; }
  std::string rfc5322_date() override { return "Sun, 22 Nov 2026 18:00:00 +0000"; }
  int n = 0;
  std::deque<std::string> bodies;
};

class RequireTlsSession : public ::testing::Test {
 protected:
  void SetUp() override {
    policy = std::make_shared<smtp::SessionPolicy>();
    policy->hostname = "mx.lab.test";
    policy->listener_name = "smtp";
    policy->accepted_domains = {"lab.test"};
    policy->offer_starttls = true;
    policy->message_size = 100000;
    session = std::make_unique<smtp::ServerSession>(policy, &host, "192.0.2.7");
    session->greet();
    take();
  }
  std::string send(std::string_view in) {
    session->on_input(in);
    while (session->want() == smtp::ServerSession::Want::kCommit) {
      committed.push_back(session->take_message());
      session->commit_done(smtp::CommitStatus::kOk);
    }
    return take();
  }
  std::string take() {
    std::string out = session->output();
    session->output().clear();
    return out;
  }
  void starttls() {
    ASSERT_EQ(send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    session->tls_started(smtp::TlsState{true, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, false, ""});
  }

  std::shared_ptr<smtp::SessionPolicy> policy;
  FakeHost host;
  std::unique_ptr<smtp::ServerSession> session;
  std::vector<smtp::ServerSession::Message> committed;
};

TEST_F(RequireTlsSession, AdvertisedOnlyAfterStartTls) {
  std::string before = send("EHLO client.test\r\n");
  EXPECT_NE(before.find("STARTTLS\r\n"), std::string::npos);
  EXPECT_EQ(before.find("REQUIRETLS"), std::string::npos);
  starttls();
  std::string after = send("EHLO client.test\r\n");
  EXPECT_NE(after.find("REQUIRETLS"), std::string::npos);
  EXPECT_EQ(after.find("STARTTLS\r\n"), std::string::npos);
}

TEST_F(RequireTlsSession, AdvertisedOnImplicitTls) {
  session = std::make_unique<smtp::ServerSession>(policy, &host, "192.0.2.7");
  session->tls_handshake_done_implicit(smtp::TlsState{true, "TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, false, ""});
  session->greet();
  take();
  EXPECT_NE(send("EHLO client.test\r\n").find("250 REQUIRETLS"), std::string::npos);
}

TEST_F(RequireTlsSession, RefusedWithoutTls) {
  send("EHLO client.test\r\n");
  EXPECT_EQ(send("MAIL FROM:<a@b.test> REQUIRETLS\r\n"), "530 5.7.10 REQUIRETLS needs a TLS session: issue STARTTLS first\r\n");
  // The transaction did not start: a plain MAIL works.
  EXPECT_EQ(send("MAIL FROM:<a@b.test>\r\n"), "250 2.1.0 Ok\r\n");
}

TEST_F(RequireTlsSession, NeedsEhlo) {
  starttls();
  send("HELO client.test\r\n");
  EXPECT_EQ(send("MAIL FROM:<a@b.test> REQUIRETLS\r\n"), "555 5.5.4 Unsupported option: ESMTP parameters need EHLO\r\n");
}

TEST_F(RequireTlsSession, SyntaxErrorsUnderTls) {
  starttls();
  send("EHLO client.test\r\n");
  EXPECT_EQ(send("MAIL FROM:<a@b.test> REQUIRETLS=YES\r\n"), "555 5.5.4 Unsupported option: REQUIRETLS=YES\r\n");
  EXPECT_EQ(send("MAIL FROM:<a@b.test> REQUIRETLS REQUIRETLS\r\n"), "555 5.5.4 Unsupported option: REQUIRETLS\r\n");
}

TEST_F(RequireTlsSession, AcceptedUnderTlsAndRecorded) {
  starttls();
  send("EHLO client.test\r\n");
  EXPECT_EQ(send("MAIL FROM:<a@b.test> REQUIRETLS\r\n"), "250 2.1.0 Ok\r\n");
  send("RCPT TO:<u@lab.test>\r\n");
  send("DATA\r\n");
  // REQUIRETLS wins over the header field (RFC 8689 4.1).
  std::string r = send("Subject: x\r\nTLS-Required: No\r\n\r\nhi\r\n.\r\n");
  EXPECT_NE(r.find("250 2.0.0 Ok: queued as"), std::string::npos);
  ASSERT_EQ(committed.size(), 1u);
  EXPECT_TRUE(committed[0].envelope.requiretls);
  EXPECT_FALSE(committed[0].envelope.tls_required_no);
  // RSET forgets it.
  send("MAIL FROM:<a@b.test>\r\nRCPT TO:<u@lab.test>\r\nDATA\r\n");
  send("Subject: y\r\n\r\nhi\r\n.\r\n");
  ASSERT_EQ(committed.size(), 2u);
  EXPECT_FALSE(committed[1].envelope.requiretls);
}

TEST_F(RequireTlsSession, TlsRequiredNoThroughData) {
  send("EHLO client.test\r\n");
  send("MAIL FROM:<a@b.test>\r\nRCPT TO:<u@lab.test>\r\nDATA\r\n");
  // Split at awkward places, including inside the field name and the CRLF.
  for (std::string_view piece : {"Subject: x\r\nTLS-Req", "uired:\r", "\n  no\r\n", "\r\nbody\r\n.\r\n"}) send(piece);
  ASSERT_EQ(committed.size(), 1u);
  EXPECT_TRUE(committed[0].envelope.tls_required_no);
  EXPECT_FALSE(committed[0].envelope.requiretls);
  // The body reached the sink unchanged, after our Received: header.
  EXPECT_NE(host.bodies.back().find("Subject: x\r\nTLS-Required:\r\n  no\r\n\r\nbody\r\n"), std::string::npos);
  EXPECT_EQ(host.bodies.back().rfind("Received: ", 0), 0u);

  send("MAIL FROM:<a@b.test>\r\nRCPT TO:<u@lab.test>\r\nDATA\r\n");
  send("Subject: x\r\n\r\nTLS-Required: No\r\n.\r\n");  // in the body: not a header field
  ASSERT_EQ(committed.size(), 2u);
  EXPECT_FALSE(committed[1].envelope.tls_required_no);
}

TEST_F(RequireTlsSession, TlsRequiredNoThroughBdat) {
  send("EHLO client.test\r\n");
  send("MAIL FROM:<a@b.test>\r\nRCPT TO:<u@lab.test>\r\n");
  const std::string a = "Subject: x\r\nTLS-Requi";
  const std::string b = "red: No\r\n\r\nbody\r\n";
  EXPECT_NE(send("BDAT " + std::to_string(a.size()) + "\r\n" + a).find("250 2.0.0 Ok"), std::string::npos);
  EXPECT_NE(send("BDAT " + std::to_string(b.size()) + " LAST\r\n" + b).find("queued as"), std::string::npos);
  ASSERT_EQ(committed.size(), 1u);
  EXPECT_TRUE(committed[0].envelope.tls_required_no);

  send("MAIL FROM:<a@b.test>\r\nRCPT TO:<u@lab.test>\r\n");
  const std::string c = "Subject: x\r\n\r\nTLS-Required: No\r\n";
  send("BDAT " + std::to_string(c.size()) + " LAST\r\n" + c);
  ASSERT_EQ(committed.size(), 2u);
  EXPECT_FALSE(committed[1].envelope.tls_required_no);
}

// ---- which MX hosts a REQUIRETLS message may use -------------------------------------------------

policy::HostPolicy host(const std::string& name, policy::TlsRequirement tls, bool sts_testing = false) {
  policy::HostPolicy h;
  h.name = name;
  h.tls = tls;
  h.sts_testing = sts_testing;
  h.addresses = {"192.0.2.1"};
  return h;
}

TEST(RequireTlsHosts, DnssecSecureWithDane) {
  policy::DestinationPolicy p;
  p.dnssec = "secure";
  p.sts = "no-policy";
  p.hosts = {host("mx1.d.test", policy::TlsRequirement::kDane), host("mx2.d.test", policy::TlsRequirement::kMay)};
  EXPECT_EQ(policy::requiretls_host_refusal(p, p.hosts[0]), "");
  EXPECT_NE(policy::requiretls_host_refusal(p, p.hosts[1]).find("no verified TLS possible with mx2.d.test"), std::string::npos);
  std::string why;
  EXPECT_EQ(policy::requiretls_candidates(p, {}, &why), std::vector<size_t>{0});
  EXPECT_TRUE(why.empty());
  // mx1 refused in a session (no REQUIRETLS): nothing is left, every reason is named.
  auto left = policy::requiretls_candidates(p, {{"mx1.d.test", "mx1.d.test[192.0.2.1] does not advertise REQUIRETLS"}}, &why);
  EXPECT_TRUE(left.empty());
  EXPECT_NE(why.find("does not advertise REQUIRETLS"), std::string::npos);
  EXPECT_NE(why.find("no verified TLS possible with mx2.d.test"), std::string::npos);
}

TEST(RequireTlsHosts, InsecureWithoutMtaSts) {
  policy::DestinationPolicy p;
  p.dnssec = "insecure";
  p.sts = "no-policy";
  p.hosts = {host("mx.d.test", policy::TlsRequirement::kMay)};
  std::string why;
  EXPECT_TRUE(policy::requiretls_candidates(p, {}, &why).empty());
  EXPECT_EQ(why, "MX mx.d.test not DNSSEC-validated (insecure) and no MTA-STS policy");
}

TEST(RequireTlsHosts, MtaStsEnforceAndTesting) {
  policy::DestinationPolicy p;
  p.dnssec = "insecure";
  p.sts = "enforce";
  p.sts_mx = {"*.d.test"};
  p.hosts = {host("mx.d.test", policy::TlsRequirement::kWebPki), host("mx.other.test", policy::TlsRequirement::kWebPki)};
  EXPECT_EQ(policy::requiretls_host_refusal(p, p.hosts[0]), "");
  EXPECT_EQ(policy::requiretls_host_refusal(p, p.hosts[1]), "MX mx.other.test not DNSSEC-validated and not covered by the MTA-STS policy");
  p.sts = "testing";
  p.hosts = {host("mx.d.test", policy::TlsRequirement::kMay, /*sts_testing=*/true)};
  EXPECT_EQ(policy::requiretls_host_refusal(p, p.hosts[0]), "");  // the testing WebPKI check verifies
  p.sts = "none";
  EXPECT_NE(policy::requiretls_host_refusal(p, p.hosts[0]), "");
}

TEST(RequireTlsHosts, BogusAndNoHosts) {
  policy::DestinationPolicy p;
  p.dnssec = "bogus";
  p.hosts = {host("mx.d.test", policy::TlsRequirement::kDane)};
  EXPECT_NE(policy::requiretls_host_refusal(p, p.hosts[0]).find("not DNSSEC-validated (bogus)"), std::string::npos);
  p.hosts.clear();
  std::string why;
  EXPECT_TRUE(policy::requiretls_candidates(p, {}, &why).empty());
  EXPECT_EQ(why, "no MX host");
}

}  // namespace
}  // namespace mxedge
