// run_stats.cc - what mxedge-loadgen counts and measures.
//
// DESCRIPTION
//   Merging keeps the first distinct error samples in worker order, so the
//   samples printed are the earliest kinds of failure each worker saw.
//
// STANDARDS
//   None.
//
// SECURITY
//   Bounded sample storage; see run_stats.h.
#include "run_stats.h"

#include <algorithm>

namespace mxedge::loadgen {

std::string_view error_class_name(ErrorClass error_class) {
  switch (error_class) {
    case ErrorClass::kConnect:
      return "connect";
    case ErrorClass::kTls:
      return "tls";
    case ErrorClass::kTimeout:
      return "timeout";
    case ErrorClass::kReply:
      return "reply";
    case ErrorClass::kClosed:
      return "closed";
    case ErrorClass::kProtocol:
      return "protocol";
    case ErrorClass::kCount:
      break;
  }
  return "unknown";
}

void RunStats::count(CountMap& map, std::string_view key) {
  const auto it = map.find(key);
  if (it != map.end()) {
    ++it->second;
  } else {
    map.emplace(std::string(key), 1);
  }
}

void RunStats::record_error(ErrorClass error_class, std::string_view key, std::string_view sample) {
  count(errors, key);
  ++error_classes[static_cast<int>(error_class)];
  if (error_samples.size() < kMaxErrorSamples &&
      std::find(error_samples.begin(), error_samples.end(), sample) == error_samples.end()) {
    error_samples.emplace_back(sample);
  }
}

void TimelineSlot::merge(const TimelineSlot& other) {
  sessions_ok += other.sessions_ok;
  sessions_failed += other.sessions_failed;
  session.merge(other.session);
}

void RunStats::record_session_end(std::int64_t since_start_ns, bool ok, std::int64_t duration_ns) {
  if (!timeline_enabled) return;
  std::size_t slot = since_start_ns <= 0 ? 0 : static_cast<std::size_t>(since_start_ns / 1'000'000'000);
  slot = std::min(slot, kMaxTimelineSlots - 1);
  if (timeline.size() <= slot) timeline.resize(slot + 1);
  if (ok) {
    ++timeline[slot].sessions_ok;
    timeline[slot].session.record(duration_ns);
  } else {
    ++timeline[slot].sessions_failed;
  }
}

void RunStats::merge(const RunStats& other) {
  timeline_enabled = timeline_enabled || other.timeline_enabled;
  if (timeline.size() < other.timeline.size()) timeline.resize(other.timeline.size());
  for (std::size_t i = 0; i < other.timeline.size(); ++i) timeline[i].merge(other.timeline[i]);
  sessions_started += other.sessions_started;
  sessions_ok += other.sessions_ok;
  sessions_failed += other.sessions_failed;
  sessions_aborted += other.sessions_aborted;
  messages_ok += other.messages_ok;
  messages_failed += other.messages_failed;
  tls_handshakes += other.tls_handshakes;
  late_starts += other.late_starts;
  missed_starts += other.missed_starts;
  max_start_lag_ns = std::max(max_start_lag_ns, other.max_start_lag_ns);
  idle_reached += other.idle_reached;
  idle_held += other.idle_held;
  idle_dropped += other.idle_dropped;
  connect_to_greeting.merge(other.connect_to_greeting);
  starttls.merge(other.starttls);
  data_to_250.merge(other.data_to_250);
  for (const auto& [key, n] : other.tls_versions) tls_versions[key] += n;
  for (const auto& [key, n] : other.tls_ciphers) tls_ciphers[key] += n;
  for (const auto& [key, n] : other.errors) errors[key] += n;
  for (int i = 0; i < static_cast<int>(ErrorClass::kCount); ++i) error_classes[i] += other.error_classes[i];
  for (const std::string& sample : other.error_samples) {
    if (error_samples.size() >= kMaxErrorSamples) break;
    if (std::find(error_samples.begin(), error_samples.end(), sample) == error_samples.end())
      error_samples.push_back(sample);
  }
}

}  // namespace mxedge::loadgen
