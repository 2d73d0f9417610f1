// Fuzz target: the DATA reader and the BDAT chunk reader. Invariants: a DATA terminator is consumed
// only as CRLF.CRLF, content handed to the sink never contains a bare CR or LF when the message is
// acceptable, and chunking the input differently never changes the outcome (nor, for an acceptable
// message, the content).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "dataplane/smtp/body_reader.h"

namespace {

class StringSink : public mxedge::smtp::BodySink {
 public:
  void append(std::string_view d) override { data.append(d); }
  std::string data;
};

struct Outcome {
  size_t consumed;
  bool done;
  mxedge::smtp::ContentFlags flags;
  std::string body;
};

Outcome run(std::string_view in, size_t step) {
  StringSink sink;
  mxedge::smtp::DataReader r(1 << 16, 1000, &sink);
  size_t consumed = 0;
  while (consumed < in.size() && !r.done()) {
    auto piece = in.substr(consumed, step);
    size_t used = r.feed(piece);
    consumed += used;
    if (used < piece.size()) break;
  }
  return {consumed, r.done(), r.flags(), sink.data};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t step = 1 + data[0] % 17;
  Outcome a = run(in, in.size() + 1);
  Outcome b = run(in, step);
  if (a.done != b.done || a.consumed != b.consumed || a.flags.bare_cr_or_lf != b.flags.bare_cr_or_lf) std::abort();
  // The content handed to the sink is the same however the input is chunked, for an acceptable message.
  // An unacceptable one is refused after its end and its partial content thrown away; how much of it
  // reached the sink before the reader saw the bare CR depends on where the chunk ended (the reader
  // stops appending at the first bare CR or LF it sees), which the fuzzer found and which is fine.
  if (a.flags.acceptable() && a.body != b.body) std::abort();
  if (a.done) {
    // The bytes consumed end with the terminator.
    std::string_view used = in.substr(0, a.consumed);
    if (!(used == ".\r\n" || (used.size() >= 5 && used.substr(used.size() - 5) == "\r\n.\r\n"))) std::abort();
  }
  if (a.done && a.flags.acceptable()) {
    for (size_t i = 0; i < a.body.size(); ++i) {
      if (a.body[i] == '\n' && (i == 0 || a.body[i - 1] != '\r')) std::abort();
      if (a.body[i] == '\r' && (i + 1 >= a.body.size() || a.body[i + 1] != '\n')) std::abort();
    }
  }
  StringSink sink;
  mxedge::smtp::ChunkReader c(1 << 16, 1000, &sink);
  for (size_t pos = 0; pos < in.size(); pos += step) c.feed(in.substr(pos, step));
  c.finish();
  if (c.flags().acceptable() && sink.data != in) std::abort();
  return 0;
}
