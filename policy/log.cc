// Structured log lines; see log.h.
#include "policy/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace mxedge::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_format{static_cast<int>(Format::kLogfmt)};

const char* level_name(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarning: return "warning";
    case Level::kError: return "error";
  }
  return "info";
}

bool json() { return g_format.load(std::memory_order_relaxed) == static_cast<int>(Format::kJson); }

void append_timestamp(std::string& out) {
  auto now = std::chrono::system_clock::now();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>((us / 1000) % 1000));
  out.append(buf, static_cast<size_t>(n));
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          out += esc;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

// logfmt: quote when the value has spaces, quotes, '=' or control bytes; escape those inside quotes.
void append_logfmt_value(std::string& out, std::string_view s, bool quote_always) {
  bool quote = quote_always || s.empty();
  for (unsigned char c : s) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) {
      quote = true;
      break;
    }
  }
  if (!quote) {
    out.append(s);
    return;
  }
  out.push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

}  // namespace

void configure(Format format, Level level) {
  g_format.store(static_cast<int>(format));
  g_level.store(static_cast<int>(level));
}

bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

Line::Line(Level level, std::string_view event) : on_(enabled(level)) {
  if (!on_) return;
  buf_.reserve(256);
  std::string ts;
  append_timestamp(ts);
  if (json()) {
    buf_ += "{\"ts\":\"";
    buf_ += ts;
    buf_ += "\",\"level\":\"";
    buf_ += level_name(level);
    buf_ += "\",\"event\":";
    append_json_string(buf_, event);
  } else {
    buf_ += "ts=";
    buf_ += ts;
    buf_ += " level=";
    buf_ += level_name(level);
    buf_ += " event=";
    append_logfmt_value(buf_, event, false);
  }
}

void Line::raw(std::string_view key, std::string_view value, bool quote_always) {
  if (!on_) return;
  if (json()) {
    buf_ += ',';
    append_json_string(buf_, key);
    buf_ += ':';
    if (quote_always) {
      append_json_string(buf_, value);
    } else {
      buf_.append(value);
    }
  } else {
    buf_ += ' ';
    buf_.append(key);
    buf_ += '=';
    append_logfmt_value(buf_, value, false);
  }
}

Line& Line::kv(std::string_view key, std::string_view value) {
  raw(key, value, true);
  return *this;
}
Line& Line::kv(std::string_view key, int64_t value) {
  raw(key, std::to_string(value), false);
  return *this;
}
Line& Line::kv(std::string_view key, uint64_t value) {
  raw(key, std::to_string(value), false);
  return *this;
}
Line& Line::kv(std::string_view key, bool value) {
  raw(key, value ? "true" : "false", false);
  return *this;
}
Line& Line::kv(std::string_view key, double value) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.3f", value);
  raw(key, std::string_view(buf, static_cast<size_t>(n)), false);
  return *this;
}

Line::~Line() {
  if (!on_) return;
  if (json()) buf_ += '}';
  buf_ += '\n';
  // One write per line: atomic with respect to other threads' lines for pipe/journal sizes we use.
  const char* p = buf_.data();
  size_t left = buf_.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void fatal(std::string_view what) {
  { Line(Level::kError, "fatal").kv("reason", what); }
  std::abort();
}

}  // namespace mxedge::log
