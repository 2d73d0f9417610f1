// Fuzz target: SMTP reply parsing of what a (possibly hostile) next hop sends.
#include <cstdint>
#include <string_view>

#include "dataplane/smtp/smtp_reply.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  mxedge::smtp::ReplyParser p(512, 16);
  while (!in.empty()) {
    auto r = p.feed(in);
    if (r == mxedge::smtp::ReplyParser::Result::kError) break;
    if (r == mxedge::smtp::ReplyParser::Result::kReply) {
      auto reply = p.take();
      (void)reply.text();
      (void)mxedge::smtp::ehlo_has(reply, "STARTTLS");
    }
  }
  return 0;
}
