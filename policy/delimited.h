// Length-delimited protobuf framing for the Unix sockets between mxedge's processes (a varint length,
// then the message: google/protobuf/util/delimited_message_util.h's format), for non-blocking readers
// that hold a partial buffer.
#pragma once

#include <google/protobuf/message_lite.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace mxedge::policy {

// Appends `message` with its length prefix to `out`.
void append_delimited(const google::protobuf::MessageLite& message, std::string* out);

enum class FrameStatus {
  kNeedMore,  // `buffer` does not hold a whole frame yet
  kFrame,     // one frame: `payload`, and `consumed` bytes to drop from the buffer
  kTooLarge,  // the announced length exceeds `max_size`: the stream cannot be trusted any more
  kBadLength, // the length prefix is not a valid varint32
};

FrameStatus next_frame(std::string_view buffer, size_t max_size, std::string_view* payload, size_t* consumed);

}  // namespace mxedge::policy
