// Unit tests for delivery status notifications (dataplane/delivery/dsn.h): who gets one (RFC 3461
// NOTIFY, no bounce of a bounce) and the RFC 3464 / RFC 6522 structure of the text.
#include "dataplane/delivery/dsn.h"

#include <gtest/gtest.h>

namespace mxedge::delivery {
namespace {

mxedge::spool::v1::Envelope envelope() {
  mxedge::spool::v1::Envelope e;
  e.set_queue_id("Q1");
  e.set_mail_from("alice@lab.test");
  e.set_envid("env-42");
  e.set_received_at_us(1'700'000'000'000'000);
  auto* r0 = e.add_recipients();
  r0->set_address("bob@example.test");
  auto* r1 = e.add_recipients();
  r1->set_address("carol@example.test");
  r1->set_notify(8);  // NEVER
  auto* r2 = e.add_recipients();
  r2->set_address("dave@example.test");
  r2->set_notify(4);  // DELAY only
  r2->set_orcpt("rfc822;dave@example.test");
  auto* r3 = e.add_recipients();
  r3->set_address("erin@example.test");
  r3->set_notify(2 | 4);  // FAILURE,DELAY
  return e;
}

std::vector<uint32_t> indexes(const std::vector<DsnRecipient>& v) {
  std::vector<uint32_t> out;
  for (const auto& r : v) out.push_back(r.index);
  return out;
}

TEST(Dsn, NotifyRulesAndNoBounceOfABounce) {
  auto e = envelope();
  std::vector<DsnRecipient> all = {{0, "5.1.1", "", ""}, {1, "5.1.1", "", ""}, {2, "5.1.1", "", ""}, {3, "5.1.1", "", ""}};
  EXPECT_EQ(indexes(dsn_recipients(e, DsnKind::kFailure, all)), (std::vector<uint32_t>{0, 3}));
  EXPECT_EQ(indexes(dsn_recipients(e, DsnKind::kDelay, all)), (std::vector<uint32_t>{2, 3}));
  e.set_mail_from("");
  EXPECT_TRUE(dsn_recipients(e, DsnKind::kFailure, all).empty());
  EXPECT_TRUE(dsn_recipients(e, DsnKind::kDelay, all).empty());
}

TEST(Dsn, FailureNoticeStructure) {
  auto e = envelope();
  DsnText t{"gw.lab.test", 1'700'000'100'000'000, 0, "gw.lab.test"};
  const std::string original = "Subject: hello\r\nFrom: alice@lab.test\r\n\r\nbody\r\n";
  const std::string m = build_dsn(e, DsnKind::kFailure, {{0, "5.7.5", "mx.example.test", "smtp; 550 5.7.5 nope\r\nInjected: header"}}, t,
                                  original, false);
  EXPECT_NE(m.find("Content-Type: multipart/report; report-type=delivery-status; boundary=\"mxedge-dsn-Q1-"), std::string::npos);
  EXPECT_NE(m.find("\r\nReporting-MTA: dns; gw.lab.test\r\n"), std::string::npos);
  EXPECT_NE(m.find("\r\nOriginal-Envelope-Id: env-42\r\n"), std::string::npos);
  EXPECT_NE(m.find("\r\nFinal-Recipient: rfc822; bob@example.test\r\nAction: failed\r\nStatus: 5.7.5\r\nRemote-MTA: dns; mx.example.test\r\n"),
            std::string::npos);
  // A diagnostic cannot inject header lines.
  EXPECT_EQ(m.find("\r\nInjected: header"), std::string::npos);
  EXPECT_NE(m.find("Content-Type: message/rfc822\r\n"), std::string::npos);
  EXPECT_NE(m.find(original), std::string::npos);
  EXPECT_NE(m.find("Auto-Submitted: auto-replied\r\n"), std::string::npos);
  EXPECT_TRUE(m.ends_with("--\r\n"));
  EXPECT_EQ(m.find("Will-Retry-Until"), std::string::npos);
  // Every line ends in CRLF.
  for (size_t i = 0; i < m.size(); ++i)
    if (m[i] == '\n') {
      ASSERT_TRUE(i > 0 && m[i - 1] == '\r') << "bare LF at " << i;
    }
}

TEST(Dsn, DelayNoticeCarriesWillRetryUntilAndHeadersOnlyWhenAsked) {
  auto e = envelope();
  DsnText t{"gw.lab.test", 1'700'000'100'000'000, 1'700'086'400'000'000, "gw.lab.test"};
  const std::string m = build_dsn(e, DsnKind::kDelay, {{2, "4.4.1", "", "x-mxedge; no MX host could be used"}}, t,
                                  "Subject: hello\r\n\r\n", true);
  EXPECT_NE(m.find("Subject: Delayed Mail (still being retried)"), std::string::npos);
  EXPECT_NE(m.find("Action: delayed\r\nStatus: 4.4.1\r\nDiagnostic-Code: x-mxedge; no MX host could be used\r\nWill-Retry-Until: "),
            std::string::npos);
  EXPECT_NE(m.find("Original-Recipient: rfc822;dave@example.test\r\n"), std::string::npos);
  EXPECT_NE(m.find("Content-Type: text/rfc822-headers\r\n"), std::string::npos);
}

TEST(Dsn, StatusAndDomainHelpers) {
  EXPECT_EQ(enhanced_status("550 5.1.1 <x@y>: no such user", "5.0.0"), "5.1.1");
  EXPECT_EQ(enhanced_status("4.7.5 no MX host of x could be used", "4.0.0"), "4.7.5");
  EXPECT_EQ(enhanced_status("554 delivery time expired", "4.4.7"), "4.4.7");
  EXPECT_EQ(enhanced_status("version 1.2.3 of x", "5.0.0"), "5.0.0");  // not a status: no 2/4/5 class
  EXPECT_EQ(domain_of("Alice@Example.TEST."), "example.test");
  EXPECT_EQ(domain_of("postmaster"), "");
}

}  // namespace
}  // namespace mxedge::delivery
