// Unit tests for SMTP reply parsing (dataplane/smtp/smtp_reply.h).
#include "dataplane/smtp/smtp_reply.h"

#include <gtest/gtest.h>

namespace mxedge::smtp {
namespace {

TEST(ReplyParser, MultiLineReplyAcrossFeeds) {
  ReplyParser p;
  std::string_view a = "250-mx.test\r\n250-PIPE";
  EXPECT_EQ(p.feed(a), ReplyParser::Result::kNeedMore);
  std::string_view b = "LINING\r\n250 STARTTLS\r\n220 next";
  ASSERT_EQ(p.feed(b), ReplyParser::Result::kReply);
  Reply r = p.take();
  EXPECT_EQ(r.code, 250);
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_TRUE(ehlo_has(r, "pipelining"));
  EXPECT_TRUE(ehlo_has(r, "STARTTLS"));
  EXPECT_FALSE(ehlo_has(r, "mx.test"));  // the first line is the greeting, not an extension
  EXPECT_EQ(b, "220 next");
}

TEST(ReplyParser, Errors) {
  {
    ReplyParser p;
    std::string_view in = "25x hello\r\n";
    EXPECT_EQ(p.feed(in), ReplyParser::Result::kError);
  }
  {
    ReplyParser p;
    std::string_view in = "250-a\r\n251 b\r\n";
    EXPECT_EQ(p.feed(in), ReplyParser::Result::kError);
  }
  {
    ReplyParser p(16);
    std::string_view in = "250 aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    EXPECT_EQ(p.feed(in), ReplyParser::Result::kError);
  }
  {
    ReplyParser p;
    std::string_view in = "250\r\n";
    ASSERT_EQ(p.feed(in), ReplyParser::Result::kReply);
    EXPECT_EQ(p.take().code, 250);
  }
}

}  // namespace
}  // namespace mxedge::smtp
