// Unit tests for the DATA and BDAT content readers, including every SMTP smuggling variant.
#include "dataplane/smtp/body_reader.h"

#include <gtest/gtest.h>

#include <string>

namespace mxedge::smtp {
namespace {

class StringSink : public BodySink {
 public:
  void append(std::string_view d) override { data.append(d); }
  std::string data;
};

struct DataResult {
  size_t consumed;
  bool done;
  ContentFlags flags;
  std::string body;
};

// Feeds input in pieces of `step` bytes (0: all at once) to check that chunk boundaries never matter.
DataResult run_data(const std::string& input, size_t step = 0, uint64_t max = 1 << 20, uint32_t line = 1000) {
  StringSink sink;
  DataReader r(max, line, &sink);
  size_t consumed = 0;
  if (step == 0) step = input.size();
  while (consumed < input.size() && !r.done()) {
    std::string_view piece = std::string_view(input).substr(consumed, std::min(step, input.size() - consumed));
    size_t used = r.feed(piece);
    consumed += used;
    if (used < piece.size()) break;
  }
  return {consumed, r.done(), r.flags(), sink.data};
}

TEST(DataReader, PlainMessageAndTerminator) {
  auto r = run_data("Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.body, "Subject: x\r\n\r\nhello\r\n");
  EXPECT_EQ(r.consumed, std::string("Subject: x\r\n\r\nhello\r\n.\r\n").size());
  EXPECT_TRUE(r.flags.acceptable());
}

TEST(DataReader, EmptyMessage) {
  auto r = run_data(".\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.body, "");
}

TEST(DataReader, DotUnstuffing) {
  auto r = run_data("..leading\r\n...\r\nmid.dle\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.body, ".leading\r\n..\r\nmid.dle\r\n");
}

TEST(DataReader, ChunkBoundariesDoNotMatter) {
  const std::string input = "a\r\n..b\r\n.c\r\nline\r\n.\r\n";
  auto whole = run_data(input);
  for (size_t step = 1; step < input.size(); ++step) {
    auto r = run_data(input, step);
    EXPECT_TRUE(r.done) << step;
    EXPECT_EQ(r.body, whole.body) << step;
    EXPECT_EQ(r.consumed, input.size()) << step;
  }
}

// None of these may end DATA; each is content with a bare CR or LF (or a NUL), and only the real
// CRLF.CRLF at the end finishes the message.
TEST(DataReader, SmugglingVariantsNeverEndData) {
  const char* variants[] = {"\n.\n", "\n.\r\n", "\r.\r\n", "\r.\r", "\r\n\x00.\r\n"};
  for (size_t i = 0; i < sizeof variants / sizeof *variants; ++i) {
    std::string v = i == 4 ? std::string("\r\n\x00.\r\n", 6) : std::string(variants[i]);
    std::string input = "Subject: s\r\n\r\nbody" + v + "MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\nDATA\r\nsmuggled\r\n.\r\n";
    for (size_t step : {size_t{0}, size_t{1}, size_t{3}}) {
      auto r = run_data(input, step);
      EXPECT_TRUE(r.done) << i;
      EXPECT_EQ(r.consumed, input.size()) << "variant " << i << " ended DATA early (step " << step << ")";
      if (i != 4) {
        EXPECT_TRUE(r.flags.bare_cr_or_lf) << i;
      } else {
        EXPECT_TRUE(r.flags.acceptable());
      }
    }
  }
}

TEST(DataReader, BareLfAndBareCrAreFlagged) {
  EXPECT_TRUE(run_data("a\nb\r\n.\r\n").flags.bare_cr_or_lf);
  EXPECT_TRUE(run_data("a\rb\r\n.\r\n").flags.bare_cr_or_lf);
  EXPECT_TRUE(run_data(".\rx\r\n.\r\n").flags.bare_cr_or_lf);
  EXPECT_TRUE(run_data(".\nx\r\n.\r\n").flags.bare_cr_or_lf);
  EXPECT_FALSE(run_data("a\r\nb\r\n.\r\n").flags.bare_cr_or_lf);
}

TEST(DataReader, LineLengthLimitIncludesCrlf) {
  std::string ok(998, 'x');
  EXPECT_FALSE(run_data(ok + "\r\n.\r\n").flags.line_too_long);
  EXPECT_TRUE(run_data(ok + "x\r\n.\r\n").flags.line_too_long);
  // Split across chunks too.
  EXPECT_TRUE(run_data(ok + "x\r\n.\r\n", 7).flags.line_too_long);
}

TEST(DataReader, SizeLimitStopsWritingButFindsTheEnd) {
  std::string body(5000, 'y');
  auto r = run_data(body + "\r\n.\r\nNOOP\r\n", 0, 1000, 100000);
  EXPECT_TRUE(r.done);
  EXPECT_TRUE(r.flags.too_big);
  EXPECT_LT(r.body.size(), 5000u);
  EXPECT_EQ(r.consumed, body.size() + 5);
}

TEST(ChunkReader, PairsCrLfAcrossChunks) {
  StringSink sink;
  ChunkReader r(1 << 20, 1000, &sink);
  r.feed("line one\r");
  r.feed("\nline two\r\n");
  r.finish();
  EXPECT_TRUE(r.flags().acceptable());
  EXPECT_EQ(sink.data, "line one\r\nline two\r\n");
}

TEST(ChunkReader, BareCrLfAndTrailingCr) {
  {
    ChunkReader r(1 << 20, 1000, nullptr);
    r.feed("a\nb\r\n");
    EXPECT_TRUE(r.flags().bare_cr_or_lf);
  }
  {
    ChunkReader r(1 << 20, 1000, nullptr);
    r.feed("a\rb\r\n");
    EXPECT_TRUE(r.flags().bare_cr_or_lf);
  }
  {
    ChunkReader r(1 << 20, 1000, nullptr);
    r.feed("abc\r");
    r.finish();
    EXPECT_TRUE(r.flags().bare_cr_or_lf);
  }
  {
    ChunkReader r(10, 1000, nullptr);
    r.feed("0123456789ab\r\n");
    EXPECT_TRUE(r.flags().too_big);
  }
}

}  // namespace
}  // namespace mxedge::smtp
