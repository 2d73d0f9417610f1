// google.protobuf.Duration (how the configuration holds times) as milliseconds.
#pragma once

#include <google/protobuf/duration.pb.h>

#include <chrono>
#include <cstdint>

namespace mxedge::config {

inline int64_t duration_ms(const google::protobuf::Duration& d) { return d.seconds() * 1000 + d.nanos() / 1000000; }
inline std::chrono::milliseconds to_milliseconds(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(duration_ms(d));
}

}  // namespace mxedge::config
