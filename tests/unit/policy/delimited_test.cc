// Unit tests for the length-delimited framing of the planes' sockets (policy/delimited.h).
#include "policy/delimited.h"

#include <gtest/gtest.h>

#include "mxedge/policy/v1/policy.pb.h"

namespace mxedge::policy {
namespace {

TEST(Delimited, FramesRoundTripOneAtATimeAndAcrossPartialReads) {
  mxedge::policy::v1::ToControlplane a, b;
  a.mutable_hello()->set_have_version(7);
  for (int i = 0; i < 100; ++i) b.mutable_request()->add_domains("d" + std::to_string(i) + ".example");  // > 127 bytes: 2-byte varint
  std::string stream;
  append_delimited(a, &stream);
  append_delimited(b, &stream);
  // Every prefix shorter than the first frame needs more; the full stream yields both frames.
  std::string_view payload;
  size_t consumed = 0;
  for (size_t n = 0; n < 3; ++n) EXPECT_EQ(next_frame(std::string_view(stream).substr(0, n), 1 << 20, &payload, &consumed), FrameStatus::kNeedMore);
  ASSERT_EQ(next_frame(stream, 1 << 20, &payload, &consumed), FrameStatus::kFrame);
  mxedge::policy::v1::ToControlplane back;
  ASSERT_TRUE(back.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
  EXPECT_EQ(back.hello().have_version(), 7u);
  std::string_view rest = std::string_view(stream).substr(consumed);
  EXPECT_EQ(next_frame(rest.substr(0, rest.size() - 1), 1 << 20, &payload, &consumed), FrameStatus::kNeedMore);
  ASSERT_EQ(next_frame(rest, 1 << 20, &payload, &consumed), FrameStatus::kFrame);
  EXPECT_EQ(consumed, rest.size());
  ASSERT_TRUE(back.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
  EXPECT_EQ(back.request().domains_size(), 100);
  EXPECT_EQ(next_frame(rest, 10, &payload, &consumed), FrameStatus::kTooLarge);
}

TEST(Delimited, BadLengthPrefixes) {
  std::string_view payload;
  size_t consumed = 0;
  EXPECT_EQ(next_frame(std::string("\xff\xff\xff\xff\xff\x01", 6), 1 << 20, &payload, &consumed), FrameStatus::kBadLength);
  EXPECT_EQ(next_frame(std::string("\xff\xff\xff\xff\x7f", 5), UINT32_MAX, &payload, &consumed), FrameStatus::kBadLength);  // > 2^32
  EXPECT_EQ(next_frame(std::string("\x00", 1), 1 << 20, &payload, &consumed), FrameStatus::kFrame);  // an empty message
  EXPECT_EQ(consumed, 1u);
}

}  // namespace
}  // namespace mxedge::policy
