#include "policy/delimited.h"

#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/delimited_message_util.h>

namespace mxedge::policy {

void append_delimited(const google::protobuf::MessageLite& message, std::string* out) {
  google::protobuf::io::StringOutputStream stream(out);
  google::protobuf::util::SerializeDelimitedToZeroCopyStream(message, &stream);
}

FrameStatus next_frame(std::string_view buffer, size_t max_size, std::string_view* payload, size_t* consumed) {
  uint64_t length = 0;
  size_t i = 0;
  for (;; ++i) {
    if (i == buffer.size()) return FrameStatus::kNeedMore;
    if (i == 5) return FrameStatus::kBadLength;
    const auto b = static_cast<unsigned char>(buffer[i]);
    length |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) break;
  }
  if (length > 0xffffffffu) return FrameStatus::kBadLength;
  if (length > max_size) return FrameStatus::kTooLarge;
  const size_t header = i + 1;
  if (buffer.size() - header < length) return FrameStatus::kNeedMore;
  *payload = buffer.substr(header, static_cast<size_t>(length));
  *consumed = header + static_cast<size_t>(length);
  return FrameStatus::kFrame;
}

}  // namespace mxedge::policy
