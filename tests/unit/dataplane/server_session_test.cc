// Unit tests for the inbound SMTP protocol engine (dataplane/smtp/server_session.h): every command,
// extension and error path, driven byte by byte as the worker would drive it.
#include "dataplane/smtp/server_session.h"

#include <gtest/gtest.h>

#include <deque>

#include <string>
#include <vector>

namespace mxedge::smtp {
namespace {

class MemorySink : public BodySink {
 public:
  explicit MemorySink(std::string* out) : out_(out) {}
  void append(std::string_view d) override { out_->append(d); }

 private:
  std::string* out_;
};

class FakeHost : public SessionHost {
 public:
  std::string new_queue_id() override { return "QID" + std::to_string(++n); }
  std::unique_ptr<BodySink> open_body(const std::string&) override {
    bodies.emplace_back();
    return std::make_unique<MemorySink>(&bodies.back());
  }
  bool spool_has_room() override { return room; }
  std::string rfc5322_date() override { return "Sun, 22 Nov 2026 18:00:00 +0000"; }
  int n = 0;
  bool room = true;
  std::deque<std::string> bodies;
};

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy = std::make_shared<SessionPolicy>();
    policy->hostname = "mx.lab.test";
    policy->listener_name = "smtp";
    policy->accepted_domains = {"lab.test", "other.test"};
    policy->offer_starttls = true;
    policy->message_size = 10000;
    policy->recipients_per_message = 3;
    policy->errors_per_session = 100;
  }
  void start() {
    session = std::make_unique<ServerSession>(policy, &host, "192.0.2.7");
    session->greet();
    take();
  }
  // Sends input, completes any commit as `status`, returns everything the server said.
  std::string send(std::string_view in, CommitStatus status = CommitStatus::kOk) {
    session->on_input(in);
    while (session->want() == ServerSession::Want::kCommit) {
      committed.push_back(session->take_message());
      session->commit_done(status);
    }
    return take();
  }
  std::string take() {
    std::string out = session->output();
    session->output().clear();
    return out;
  }
  std::string ehlo() { return send("EHLO client.test\r\n"); }

  std::shared_ptr<SessionPolicy> policy;
  FakeHost host;
  std::unique_ptr<ServerSession> session;
  std::vector<ServerSession::Message> committed;
};

TEST_F(SessionTest, GreetingAndEhloExtensions) {
  session = std::make_unique<ServerSession>(policy, &host, "192.0.2.7");
  session->greet();
  EXPECT_EQ(take(), "220 mx.lab.test ESMTP mxedge\r\n");
  std::string r = ehlo();
  EXPECT_EQ(r.rfind("250-mx.lab.test\r\n", 0), 0u);
  for (const char* ext : {"PIPELINING", "SIZE 10000", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"}) {
    EXPECT_NE(r.find(std::string(ext) + "\r\n"), std::string::npos) << ext;
  }
  EXPECT_NE(r.find("250 STARTTLS\r\n"), std::string::npos);
  EXPECT_EQ(r.find("VRFY"), std::string::npos);
  EXPECT_EQ(send("HELO x.test\r\n"), "250 mx.lab.test\r\n");
  EXPECT_EQ(send("EHLO\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
}

TEST_F(SessionTest, FullTransactionWithDotStuffingAndReceivedHeader) {
  start();
  ehlo();
  EXPECT_EQ(send("MAIL FROM:<s@remote.test>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(send("RCPT TO:<u@LAB.test>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_EQ(send("Subject: t\r\n\r\n..dot\r\n.\r\n"), "250 2.0.0 Ok: queued as QID1\r\n");
  ASSERT_EQ(committed.size(), 1u);
  const auto& env = committed[0].envelope;
  EXPECT_EQ(env.mail_from, "s@remote.test");
  ASSERT_EQ(env.recipients.size(), 1u);
  EXPECT_EQ(env.recipients[0].address, "u@LAB.test");
  const std::string& body = host.bodies.front();
  EXPECT_EQ(body.rfind("Received: from client.test ([192.0.2.7])\r\n\tby mx.lab.test (mxedge) with ESMTP id QID1\r\n", 0), 0u);
  EXPECT_NE(body.find("\tfor <u@LAB.test>; Sun, 22 Nov 2026 18:00:00 +0000\r\n"), std::string::npos);
  EXPECT_NE(body.find("Subject: t\r\n\r\n.dot\r\n"), std::string::npos);
  EXPECT_EQ(env.size, body.size());
}

TEST_F(SessionTest, PipelinedTransactionRepliesInOrder) {
  start();
  ehlo();
  std::string r = send("MAIL FROM:<s@r.test>\r\nRCPT TO:<a@lab.test>\r\nRCPT TO:<b@evil.test>\r\nRCPT TO:<c@lab.test>\r\nDATA\r\n");
  EXPECT_EQ(r, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 <b@evil.test>: Relay access denied\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_EQ(send("x\r\n.\r\nQUIT\r\n"), "250 2.0.0 Ok: queued as QID1\r\n221 2.0.0 Bye\r\n");
  EXPECT_EQ(session->want(), ServerSession::Want::kClose);
  EXPECT_EQ(committed.at(0).envelope.recipients.size(), 2u);
}

TEST_F(SessionTest, SequenceErrors) {
  start();
  EXPECT_EQ(send("MAIL FROM:<s@r.test>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  ehlo();
  EXPECT_EQ(send("RCPT TO:<a@lab.test>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(send("DATA\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  send("MAIL FROM:<s@r.test>\r\n");
  EXPECT_EQ(send("MAIL FROM:<s@r.test>\r\n"), "503 5.5.1 Error: nested MAIL command\r\n");
  EXPECT_EQ(send("DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_EQ(send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(send("RCPT TO:<a@lab.test>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
}

TEST_F(SessionTest, MiscCommands) {
  start();
  EXPECT_EQ(send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(send("HELP\r\n").substr(0, 10), "214 2.0.0 ");
  EXPECT_EQ(send("VRFY root\r\n"), "502 5.5.1 Error: command not implemented\r\n");
  EXPECT_EQ(send("EXPN list\r\n"), "502 5.5.1 Error: command not implemented\r\n");
  EXPECT_EQ(send("TURN\r\n"), "502 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(send("QUIT\r\n"), "221 2.0.0 Bye\r\n");
}

TEST_F(SessionTest, OpenRelayAttemptsAreRefused) {
  start();
  ehlo();
  send("MAIL FROM:<s@r.test>\r\n");
  EXPECT_EQ(send("RCPT TO:<u@elsewhere.test>\r\n"), "554 5.7.1 <u@elsewhere.test>: Relay access denied\r\n");
  EXPECT_EQ(send("RCPT TO:<u%elsewhere.test@lab.test>\r\n"), "550 5.7.1 <u%elsewhere.test@lab.test>: Relay access denied (percent hack)\r\n");
  EXPECT_EQ(send("RCPT TO:<elsewhere.test!u@lab.test>\r\n"), "550 5.7.1 <elsewhere.test!u@lab.test>: Relay access denied (bang path)\r\n");
  EXPECT_EQ(send("RCPT TO:<\"u@elsewhere.test\"@lab.test>\r\n"), "550 5.7.1 <\"u@elsewhere.test\"@lab.test>: Relay access denied (quoted local part with @)\r\n");
  EXPECT_EQ(send("RCPT TO:<u@[192.0.2.1]>\r\n"), "550 5.7.1 <u@[192.0.2.1]>: Relay access denied (address literal)\r\n");
  EXPECT_EQ(send("RCPT TO:<@lab.test:u@elsewhere.test>\r\n"), "550 5.7.1 <u@elsewhere.test>: Relay access denied (source route)\r\n");
  EXPECT_EQ(send("RCPT TO:<u@lab.test.elsewhere.test>\r\n"), "554 5.7.1 <u@lab.test.elsewhere.test>: Relay access denied\r\n");
  EXPECT_EQ(send("RCPT TO:<Postmaster>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(send("RCPT TO:<u@Other.Test>\r\n"), "250 2.1.5 Ok\r\n");
}

TEST_F(SessionTest, RecipientLimit) {
  start();
  ehlo();
  send("MAIL FROM:<s@r.test>\r\n");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(send("RCPT TO:<u" + std::to_string(i) + "@lab.test>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(send("RCPT TO:<u9@lab.test>\r\n"), "452 4.5.3 Error: too many recipients\r\n");
}

TEST_F(SessionTest, SizeDeclaredAndUndeclared) {
  start();
  ehlo();
  EXPECT_EQ(send("MAIL FROM:<s@r.test> SIZE=10001\r\n"), "552 5.3.4 Message size exceeds fixed limit\r\n");
  send("MAIL FROM:<s@r.test> SIZE=100\r\n");
  send("RCPT TO:<u@lab.test>\r\n");
  send("DATA\r\n");
  std::string big;
  for (int i = 0; i < 200; ++i) big += std::string(70, 'z') + "\r\n";
  EXPECT_EQ(send(big + ".\r\n"), "552 5.3.4 Message size exceeds fixed limit\r\n");
  EXPECT_TRUE(committed.empty());
  // The session continues normally afterwards.
  EXPECT_EQ(send("MAIL FROM:<s@r.test>\r\n"), "250 2.1.0 Ok\r\n");
}

TEST_F(SessionTest, BareLfInDataIsRefusedAfterTheRealEnd) {
  start();
  ehlo();
  send("MAIL FROM:<s@r.test>\r\nRCPT TO:<u@lab.test>\r\nDATA\r\n");
  std::string r = send("a\n.\nMAIL FROM:<x@evil.test>\r\nRCPT TO:<v@lab.test>\r\nDATA\r\nz\r\n.\r\n");
  EXPECT_EQ(r, "554 5.6.0 Message refused: bare CR or LF in message data\r\n");
  EXPECT_TRUE(committed.empty());
}

TEST_F(SessionTest, LongTextLineIsRefused) {
  start();
  ehlo();
  send("MAIL FROM:<s@r.test>\r\nRCPT TO:<u@lab.test>\r\nDATA\r\n");
  EXPECT_EQ(send(std::string(1200, 'q') + "\r\n.\r\n"), "554 5.6.0 Message refused: text line too long\r\n");
}

TEST_F(SessionTest, CommandLineTooLongIsDiscardedToItsEnd) {
  policy->command_line_length = 512;
  start();
  std::string r = send(std::string(600, 'A'));
  EXPECT_EQ(r, "500 5.5.2 Error: command line too long\r\n");
  EXPECT_EQ(send(std::string(100, 'B') + "\r\nNOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(send("NOOP " + std::string(600, 'x') + "\r\n"), "500 5.5.2 Error: command line too long\r\n");
}

TEST_F(SessionTest, StartTlsDiscardsPipelinedPlaintextAndResetsState) {
  start();
  ehlo();
  session->on_input("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n");
  EXPECT_EQ(session->want(), ServerSession::Want::kStartTls);
  EXPECT_EQ(take(), "220 2.0.0 Ready to start TLS\r\n");
  session->tls_started(TlsState{true, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, false, ""});
  EXPECT_EQ(take(), "");  // nothing from the injected MAIL
  EXPECT_EQ(send("MAIL FROM:<s@r.test>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  std::string r = ehlo();
  EXPECT_EQ(r.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(send("STARTTLS\r\n"), "554 5.5.1 Error: TLS already active\r\n");
  send("MAIL FROM:<s@r.test>\r\nRCPT TO:<u@lab.test>\r\nDATA\r\n");
  send("hi\r\n.\r\n");
  EXPECT_NE(host.bodies.back().find("with ESMTPS id"), std::string::npos);
  EXPECT_NE(host.bodies.back().find("(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))"), std::string::npos);
}

// Every line of our Received: header after the first is a continuation (starts with a tab), whatever
// the number of recipients and whether TLS is on: otherwise the next hop would read the rest of the
// header section as body.
TEST_F(SessionTest, ReceivedHeaderIsOneFoldedHeader) {
  for (bool tls : {false, true}) {
    for (int rcpts : {1, 2}) {
      start();
      if (tls) {
        send("STARTTLS\r\n");
        session->tls_started(TlsState{true, "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", 128, false, ""});
      }
      ehlo();
      send("MAIL FROM:<s@r.test>\r\n");
      for (int i = 0; i < rcpts; ++i) send("RCPT TO:<u" + std::to_string(i) + "@lab.test>\r\n");
      send("DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n");
      const std::string& b = host.bodies.back();
      size_t end = b.find("Subject: x\r\n");
      ASSERT_NE(end, std::string::npos);
      std::string received = b.substr(0, end);
      size_t pos = 0;
      int line = 0;
      while (pos < received.size()) {
        size_t eol = received.find("\r\n", pos);
        ASSERT_NE(eol, std::string::npos);
        if (line++ == 0) {
          EXPECT_EQ(received.compare(pos, 10, "Received: "), 0);
        } else {
          EXPECT_EQ(received[pos], '\t') << received;
        }
        pos = eol + 2;
      }
      EXPECT_NE(received.find("; Sun, 22 Nov 2026 18:00:00 +0000\r\n"), std::string::npos) << received;
    }
  }
}

TEST_F(SessionTest, StartTlsVariants) {
  start();
  EXPECT_EQ(send("STARTTLS now\r\n"), "501 5.5.4 Syntax: STARTTLS\r\n");
  policy->offer_starttls = false;
  start();
  EXPECT_EQ(send("STARTTLS\r\n"), "502 5.5.1 Error: command not implemented\r\n");
}

TEST_F(SessionTest, RequireTls) {
  policy->require_tls = true;
  start();
  ehlo();
  EXPECT_EQ(send("MAIL FROM:<s@r.test>\r\n"), "530 5.7.0 Must issue a STARTTLS command first\r\n");
}

TEST_F(SessionTest, Smtputf8) {
  start();
  ehlo();
  EXPECT_EQ(send("MAIL FROM:<j\xc3\xb6rg@r.test>\r\n"), "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
  EXPECT_EQ(send("MAIL FROM:<j\xc3\xb6rg@r.test> SMTPUTF8\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(send("RCPT TO:<m\xc3\xbcller@lab.test>\r\n"), "250 2.1.5 Ok\r\n");
  send("DATA\r\n");
  send("x\r\n.\r\n");
  ASSERT_EQ(committed.size(), 1u);
  EXPECT_TRUE(committed[0].envelope.smtputf8);
  EXPECT_NE(host.bodies.back().find("with UTF8SMTP id"), std::string::npos);
}

TEST_F(SessionTest, DsnParametersAreCarried) {
  start();
  ehlo();
  send("MAIL FROM:<s@r.test> RET=HDRS ENVID=QQ+2B1\r\n");
  send("RCPT TO:<u@lab.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;u+40lab.test\r\n");
  send("DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(committed.size(), 1u);
  const auto& e = committed[0].envelope;
  EXPECT_EQ(e.ret, RetParam::kHdrs);
  EXPECT_EQ(e.envid, "QQ+2B1");
  EXPECT_EQ(e.recipients[0].notify, kNotifyFailure | kNotifyDelay);
  EXPECT_EQ(e.recipients[0].orcpt, "rfc822;u+40lab.test");
}

TEST_F(SessionTest, EsmtpParametersNeedEhlo) {
  start();
  send("HELO c.test\r\n");
  EXPECT_EQ(send("MAIL FROM:<s@r.test> SIZE=10\r\n"), "555 5.5.4 Unsupported option: ESMTP parameters need EHLO\r\n");
  EXPECT_EQ(send("MAIL FROM:<s@r.test> BODY=BINARYMIME\r\n"), "555 5.5.4 Unsupported option: BODY=BINARYMIME\r\n");
}

TEST_F(SessionTest, BdatChunksAndLast) {
  start();
  ehlo();
  send("MAIL FROM:<s@r.test>\r\nRCPT TO:<u@lab.test>\r\n");
  EXPECT_EQ(send("BDAT 5\r\nhello"), "250 2.0.0 Ok: 5 octets received\r\n");
  EXPECT_EQ(send("DATA\r\n"), "503 5.5.1 Error: DATA not allowed after BDAT\r\n");
  // A chunk containing what looks like commands is data; the CRLF is split over two chunks.
  EXPECT_EQ(send("BDAT 16\r\n\r\nQUIT\r\n.\r\nRSET\r"), "250 2.0.0 Ok: 21 octets received\r\n");
  EXPECT_EQ(send("BDAT 1 LAST\r\n\n"), "250 2.0.0 Ok: queued as QID1\r\n");
  ASSERT_EQ(committed.size(), 1u);
  EXPECT_NE(host.bodies.back().find("hello\r\nQUIT\r\n.\r\nRSET\r\n"), std::string::npos);
}

TEST_F(SessionTest, BdatBareLfRefused) {
  start();
  ehlo();
  send("MAIL FROM:<s@r.test>\r\nRCPT TO:<u@lab.test>\r\n");
  EXPECT_EQ(send("BDAT 7 LAST\r\na\n.\nb\r\n"), "554 5.6.0 Message refused: bare CR or LF in message data\r\n");
  EXPECT_TRUE(committed.empty());
}

TEST_F(SessionTest, BdatOutOfSequenceConsumesTheChunk) {
  start();
  ehlo();
  EXPECT_EQ(send("BDAT 10\r\nNOOP\r\nNOOP"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(send("BDAT x\r\n"), "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n");
  EXPECT_EQ(session->want(), ServerSession::Want::kClose);
}

TEST_F(SessionTest, CommitFailuresGiveTheRightCodes) {
  start();
  ehlo();
  send("MAIL FROM:<s@r.test>\r\nRCPT TO:<u@lab.test>\r\nDATA\r\n");
  EXPECT_EQ(send("x\r\n.\r\n", CommitStatus::kNoSpace), "452 4.3.1 Insufficient system storage\r\n");
  send("MAIL FROM:<s@r.test>\r\nRCPT TO:<u@lab.test>\r\nDATA\r\n");
  EXPECT_EQ(send("x\r\n.\r\n", CommitStatus::kError), "451 4.3.0 Error: queue file write error\r\n");
  host.room = false;
  EXPECT_EQ(send("MAIL FROM:<s@r.test>\r\n"), "452 4.3.1 Insufficient system storage\r\n");
}

TEST_F(SessionTest, InputHeldDuringCommitIsProcessedAfterwards) {
  start();
  ehlo();
  session->on_input("MAIL FROM:<s@r.test>\r\nRCPT TO:<u@lab.test>\r\nBDAT 3 LAST\r\nabcNOOP\r\n");
  ASSERT_EQ(session->want(), ServerSession::Want::kCommit);
  session->on_input("NOOP\r\n");  // arrives while the worker is committing
  committed.push_back(session->take_message());
  session->commit_done(CommitStatus::kOk);
  EXPECT_EQ(take(), "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as QID1\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
}

TEST_F(SessionTest, ErrorLimitClosesTheSession) {
  policy->errors_per_session = 3;
  start();
  send("BOGUS\r\nBOGUS\r\n");
  EXPECT_EQ(send("BOGUS\r\n"), "502 5.5.2 Error: command not recognized\r\n421 4.7.0 mx.lab.test Error: too many errors\r\n");
  EXPECT_EQ(session->want(), ServerSession::Want::kClose);
}

TEST_F(SessionTest, TimeoutAndShutdown) {
  start();
  session->timeout();
  EXPECT_EQ(take(), "421 4.4.2 mx.lab.test Error: timeout exceeded\r\n");
  start();
  ehlo();
  send("MAIL FROM:<s@r.test>\r\nRCPT TO:<u@lab.test>\r\nDATA\r\n");
  session->shutdown();
  EXPECT_EQ(take(), "");  // a message in progress is allowed to finish
  EXPECT_EQ(send("x\r\n.\r\n"), "250 2.0.0 Ok: queued as QID1\r\n421 4.3.2 mx.lab.test Service shutting down\r\n");
  EXPECT_EQ(session->want(), ServerSession::Want::kClose);
}

}  // namespace
}  // namespace mxedge::smtp
