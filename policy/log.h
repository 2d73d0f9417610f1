// Structured logging shared by every mxedge process: one line per event, logfmt (default) or JSON, to
// stderr, which systemd sends to the journal. Lines are built in memory and written with one write(2),
// so lines from different worker threads never interleave.
//
//   log::info("message.accepted").kv("qid", qid).kv("size", n);   // emitted when the temporary dies
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mxedge::log {

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class Format { kLogfmt, kJson };

// Process-wide settings; call before threads start (later calls are safe but racy for readers).
void configure(Format format, Level level);
bool enabled(Level level);

class Line {
 public:
  Line(Level level, std::string_view event);
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  ~Line();

  Line& kv(std::string_view key, std::string_view value);
  Line& kv(std::string_view key, const std::string& value) { return kv(key, std::string_view(value)); }
  Line& kv(std::string_view key, const char* value) { return kv(key, std::string_view(value)); }
  Line& kv(std::string_view key, int64_t value);
  Line& kv(std::string_view key, uint64_t value);
  Line& kv(std::string_view key, int value) { return kv(key, static_cast<int64_t>(value)); }
  Line& kv(std::string_view key, unsigned value) { return kv(key, static_cast<uint64_t>(value)); }
  Line& kv(std::string_view key, long long value) { return kv(key, static_cast<int64_t>(value)); }
  Line& kv(std::string_view key, unsigned long long value) { return kv(key, static_cast<uint64_t>(value)); }
  Line& kv(std::string_view key, bool value);
  Line& kv(std::string_view key, double value);

 private:
  void raw(std::string_view key, std::string_view value, bool quote_always);
  bool on_;
  std::string buf_;
};

inline Line debug(std::string_view event) { return Line(Level::kDebug, event); }
inline Line info(std::string_view event) { return Line(Level::kInfo, event); }
inline Line warning(std::string_view event) { return Line(Level::kWarning, event); }
inline Line error(std::string_view event) { return Line(Level::kError, event); }

// Crash with a clear message: for broken invariants only, never for conditions the environment or a
// peer can cause.
[[noreturn]] void fatal(std::string_view what);

}  // namespace mxedge::log
