// run_stats.h - what mxedge-loadgen counts and measures.
//
// DESCRIPTION
//   RunStats is owned by one worker thread and written only by it; the main
//   thread merges the workers' RunStats after joining them, so the hot path
//   takes no lock and shares no cache line. LiveCounters is the exception: a
//   handful of figures the main thread samples once a second for the progress
//   line while the workers run. Each worker's LiveCounters sits on its own cache
//   line and is only ever stored to by that worker.
//
//   Errors are keyed "<phase>.<kind>", e.g. "rcpt.550", "greeting.timeout",
//   "connect.ECONNREFUSED", "tls_handshake.failed", and grouped into classes
//   (connect, tls, timeout, reply, closed, protocol) for the summary. A session
//   records at most one error: the first thing that went wrong with it.
//
// STANDARDS
//   None.
//
// SECURITY
//   Error samples hold reply text from the server under test; it is sanitised
//   (reply_summary() in smtp_client_session.cc) before it is stored, and at most kMaxErrorSamples distinct
//   samples are kept, so a hostile server cannot grow them.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "histogram.h"

namespace mxedge::loadgen {

enum class ErrorClass { kConnect, kTls, kTimeout, kReply, kClosed, kProtocol, kCount };

std::string_view error_class_name(ErrorClass error_class);

using CountMap = std::map<std::string, std::uint64_t, std::less<>>;

// One second of the run, by the time sessions ended (--timeline): what the load looked like while
// something else changed (a flood starting, a daemon restarting), which the totals average away.
struct TimelineSlot {
  std::uint64_t sessions_ok = 0;
  std::uint64_t sessions_failed = 0;
  Histogram session;  // connect() to the end of the session, successful sessions only

  void merge(const TimelineSlot& other);
};

struct RunStats {
  static constexpr std::size_t kMaxErrorSamples = 10;
  // Beyond this many seconds the timeline stops growing (the last slot takes the rest).
  static constexpr std::size_t kMaxTimelineSlots = 3600;

  std::uint64_t sessions_started = 0;
  std::uint64_t sessions_ok = 0;
  std::uint64_t sessions_failed = 0;
  std::uint64_t sessions_aborted = 0;  // cut short by --exit-on-error or a second ^C
  std::uint64_t messages_ok = 0;
  std::uint64_t messages_failed = 0;
  std::uint64_t tls_handshakes = 0;

  // Open loop (see load_worker.cc): sessions started late, and sessions due
  // before the run ended that never started.
  std::uint64_t late_starts = 0;
  std::uint64_t missed_starts = 0;
  std::int64_t max_start_lag_ns = 0;

  // Idle mode.
  std::uint64_t idle_reached = 0;
  std::uint64_t idle_held = 0;     // still idle when the hold ended
  std::uint64_t idle_dropped = 0;  // closed by the server (or failed) while idle

  Histogram connect_to_greeting;
  Histogram starttls;
  Histogram data_to_250;

  CountMap tls_versions;
  CountMap tls_ciphers;
  CountMap errors;
  std::uint64_t error_classes[static_cast<int>(ErrorClass::kCount)] = {};
  std::vector<std::string> error_samples;

  // Empty unless --timeline: slot i holds the sessions that ended in second i of the run.
  bool timeline_enabled = false;
  std::vector<TimelineSlot> timeline;

  void count(CountMap& map, std::string_view key);
  void record_session_end(std::int64_t since_start_ns, bool ok, std::int64_t duration_ns);
  void record_error(ErrorClass error_class, std::string_view key, std::string_view sample);
  void merge(const RunStats& other);
};

// Figures sampled by the progress line. Writers use relaxed load+store, not
// read-modify-write: each counter has exactly one writer.
struct alignas(64) LiveCounters {
  std::atomic<std::uint64_t> sessions_done{0};
  std::atomic<std::uint64_t> sessions_active{0};
  std::atomic<std::uint64_t> messages_ok{0};
  std::atomic<std::uint64_t> handshakes{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> idle{0};

  static void bump(std::atomic<std::uint64_t>& counter, std::int64_t delta = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(delta),
                  std::memory_order_relaxed);
  }
};

}  // namespace mxedge::loadgen
