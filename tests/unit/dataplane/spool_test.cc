// Unit tests for the durable spool (dataplane/spool/spool.h): group commit, recovery, torn tails,
// spilled bodies, settlement and segment retirement, orphan adoption. Uses a real directory.
#include "dataplane/spool/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

namespace mxedge::spool {
namespace {

namespace fs = std::filesystem;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mxedge-spool-test-XXXXXX";
    root = mkdtemp(tmpl);
    opts.directory = root;
    opts.memory_body_limit = 1024;
    opts.segment_size = 1 << 20;
  }
  void TearDown() override { fs::remove_all(root); }

  std::unique_ptr<Spool> open_spool(unsigned worker = 0) {
    std::string err;
    auto s = Spool::open(opts, worker, &err);
    EXPECT_TRUE(s) << err;
    ready.clear();
    if (s) s->set_ready_callback([this](SpoolEntry* e) { ready.push_back(e); });
    return s;
  }

  smtp::CommitStatus put(Spool& s, const std::string& body, int rcpts = 1) {
    smtp::ServerSession::Message m;
    m.envelope.queue_id = s.new_queue_id();
    m.envelope.mail_from = "s@r.test";
    for (int i = 0; i < rcpts; ++i) m.envelope.recipients.push_back({"u" + std::to_string(i) + "@lab.test", 0, ""});
    m.body = s.open_body(m.envelope.queue_id);
    m.body->append(body);
    m.envelope.size = body.size();
    smtp::CommitStatus got = smtp::CommitStatus::kError;
    bool called = false;
    s.stage(std::move(m), [&](smtp::CommitStatus st) {
      got = st;
      called = true;
    });
    s.commit_staged();
    EXPECT_TRUE(called);
    return got;
  }

  std::string body_of(Spool& s, const SpoolEntry& e) {
    std::string out, chunk;
    uint64_t off = 0;
    while (s.read_body(e, off, 100, chunk) && !chunk.empty()) {
      out += chunk;
      off += chunk.size();
    }
    return out;
  }

  size_t count_files(const std::string& dir, const std::string& prefix) {
    size_t n = 0;
    for (auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().rfind(prefix, 0) == 0;
    return n;
  }

  std::string root;
  SpoolOptions opts;
  std::vector<SpoolEntry*> ready;
};

TEST_F(SpoolTest, CommitThenRecoverAfterRestart) {
  {
    auto s = open_spool();
    EXPECT_EQ(put(*s, "small body\r\n"), smtp::CommitStatus::kOk);
    EXPECT_EQ(put(*s, std::string(5000, 'b') + "\r\n"), smtp::CommitStatus::kOk);  // spilled to its own file
    ASSERT_EQ(ready.size(), 2u);
    EXPECT_EQ(body_of(*s, *ready[0]), "small body\r\n");
    EXPECT_FALSE(ready[1]->envelope.body_file().empty());
  }
  auto s = open_spool();
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_EQ(ready[0]->envelope.mail_from(), "s@r.test");
  EXPECT_EQ(body_of(*s, *ready[0]), "small body\r\n");
  EXPECT_EQ(body_of(*s, *ready[1]), std::string(5000, 'b') + "\r\n");
}

TEST_F(SpoolTest, GroupCommitAcknowledgesEveryStagedMessage) {
  auto s = open_spool();
  int ok = 0;
  for (int i = 0; i < 50; ++i) {
    smtp::ServerSession::Message m;
    m.envelope.queue_id = s->new_queue_id();
    m.envelope.recipients.push_back({"u@lab.test", 0, ""});
    m.body = s->open_body(m.envelope.queue_id);
    m.body->append("m" + std::to_string(i) + "\r\n");
    s->stage(std::move(m), [&](smtp::CommitStatus st) { ok += st == smtp::CommitStatus::kOk; });
  }
  EXPECT_EQ(ok, 0);  // nothing is acknowledged before the flush
  s->commit_staged();
  EXPECT_EQ(ok, 50);
  EXPECT_EQ(ready.size(), 50u);
}

TEST_F(SpoolTest, SettledMessagesAreNotRecoveredAndSegmentsRetire) {
  {
    auto s = open_spool();
    put(*s, "a\r\n", 2);
    put(*s, "b\r\n");
    mxedge::spool::v1::RecipientResult r0;
    r0.set_index(0);
    r0.set_outcome(mxedge::spool::v1::RECIPIENT_OUTCOME_DELIVERED);
    s->settle(ready[0], {r0});  // one of two recipients
    mxedge::spool::v1::RecipientResult rb = r0;
    s->settle(ready[1], {rb});  // message b fully settled
    s->flush();
  }
  auto s = open_spool();
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0]->recipients[0], RecipientState::kDelivered);
  EXPECT_EQ(ready[0]->recipients[1], RecipientState::kPending);
  mxedge::spool::v1::RecipientResult r1;
  r1.set_index(1);
  r1.set_outcome(mxedge::spool::v1::RECIPIENT_OUTCOME_FAILED);
  s->settle(ready[0], {r1});
  EXPECT_EQ(s->pending_messages(), 0u);
  // Only the active segment remains once everything older is settled.
  EXPECT_EQ(count_files(root + "/w0", "seg-"), 1u);
}

TEST_F(SpoolTest, TornTailIsTruncatedAndEarlierRecordsSurvive) {
  std::string seg;
  {
    auto s = open_spool();
    put(*s, "kept\r\n");
  }
  for (auto& e : fs::directory_iterator(root + "/w0")) {
    if (e.path().filename().string().rfind("seg-", 0) == 0 && fs::file_size(e.path()) > 0) seg = e.path();
  }
  ASSERT_FALSE(seg.empty());
  auto size_before = fs::file_size(seg);
  {
    std::ofstream f(seg, std::ios::app | std::ios::binary);
    f.write("MXS1\x01\x00\x00\x00garbage", 15);  // a record header whose payload never made it
  }
  auto s = open_spool();
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(body_of(*s, *ready[0]), "kept\r\n");
  EXPECT_EQ(fs::file_size(seg), size_before);
}

TEST_F(SpoolTest, CorruptedPayloadIsDetectedByCrc) {
  {
    auto s = open_spool();
    put(*s, "first\r\n");
    put(*s, "second\r\n");
  }
  std::string seg;
  for (auto& e : fs::directory_iterator(root + "/w0")) {
    if (e.path().filename().string().rfind("seg-", 0) == 0 && fs::file_size(e.path()) > 0) seg = e.path();
  }
  // Flip the last byte (inside the second record's body).
  int fd = ::open(seg.c_str(), O_RDWR);
  off_t end = lseek(fd, 0, SEEK_END);
  char c;
  pread(fd, &c, 1, end - 1);
  c ^= 0x55;
  pwrite(fd, &c, 1, end - 1);
  ::close(fd);
  auto s = open_spool();
  ASSERT_EQ(ready.size(), 1u);  // the damaged tail record is dropped, the first survives
  EXPECT_EQ(body_of(*s, *ready[0]), "first\r\n");
}

TEST_F(SpoolTest, UncommittedSpillFilesAreRemoved) {
  {
    auto s = open_spool();
    auto body = s->open_body("ORPHAN");
    body->append(std::string(4000, 'x'));  // spills, never committed
  }
  EXPECT_EQ(count_files(root + "/w0/data", ""), 0u);
}

TEST_F(SpoolTest, OrphanWorkerDirectoriesAreAdopted) {
  {
    auto s1 = open_spool(1);
    put(*s1, "from worker one\r\n");
    put(*s1, std::string(3000, 'z') + "\r\n");
  }
  std::string err;
  ASSERT_TRUE(Spool::adopt_orphans(root, 1, &err)) << err;
  EXPECT_FALSE(fs::exists(root + "/w1"));
  auto s0 = open_spool(0);
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_EQ(body_of(*s0, *ready[0]), "from worker one\r\n");
  EXPECT_EQ(body_of(*s0, *ready[1]), std::string(3000, 'z') + "\r\n");
}

TEST_F(SpoolTest, QueueIdsAreUnique) {
  auto s = open_spool();
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(s->new_queue_id());
  EXPECT_EQ(ids.size(), 10000u);
}

}  // namespace
}  // namespace mxedge::spool

#include "dataplane/spool/crc32c.h"

namespace mxedge::spool {
namespace {

// RFC 3720 B.4 test vectors, through the dispatching entry point and the portable path, and agreement
// of the two on every length and alignment up to 64 bytes.
TEST(Crc32c, KnownVectorsAndPathsAgree) {
  std::string zeros(32, '\0'), ones(32, '\xff'), inc(32, '\0');
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<char>(i);
  EXPECT_EQ(crc32c(zeros), 0x8a9136aau);
  EXPECT_EQ(crc32c(ones), 0x62a8ab43u);
  EXPECT_EQ(crc32c(inc), 0x46dd794eu);
  EXPECT_EQ(crc32c("123456789"), 0xe3069283u);
  std::string data;
  for (int i = 0; i < 200; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  for (size_t off = 0; off < 8; ++off) {
    for (size_t len = 0; len <= 64; ++len) {
      EXPECT_EQ(crc32c(0, data.data() + off, len), detail::crc32c_portable_for_test(0, data.data() + off, len)) << off << "/" << len;
    }
  }
  // Incremental computation equals one pass.
  EXPECT_EQ(crc32c(crc32c(0, data.data(), 77), data.data() + 77, 123), crc32c(0, data.data(), 200));
}

}  // namespace
}  // namespace mxedge::spool
