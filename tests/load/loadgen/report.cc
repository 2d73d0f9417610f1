// report.cc - mxedge-loadgen's end-of-run report, for people and for scripts.
//
// DESCRIPTION
//   Numbers are printed with fixed precision (three decimals for milliseconds
//   and seconds), never in exponent form, and never as NaN or infinity: a rate
//   over a zero elapsed time is 0.
//
// STANDARDS
//   RFC 8259 section 7 (string escaping).
//
// SECURITY
//   See report.h.
#include "report.h"

#include <fmt/format.h>

#include <iterator>
#include <utility>

namespace mxedge::loadgen {

namespace {

double per_second(std::uint64_t count, double elapsed_s) {
  return elapsed_s > 0 ? static_cast<double>(count) / elapsed_s : 0.0;
}

double ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

template <typename... Args>
void add(std::string& out, fmt::format_string<Args...> format, Args&&... args) {
  fmt::format_to(std::back_inserter(out), format, std::forward<Args>(args)...);
}

void append_count_map(std::string& out, const CountMap& map) {
  out += '{';
  bool first = true;
  for (const auto& [key, count] : map) {
    if (!first) out += ',';
    first = false;
    fmt::format_to(std::back_inserter(out), "\"{}\":{}", json_escape(key), count);
  }
  out += '}';
}

void append_latency(std::string& out, std::string_view name, const Histogram& h) {
  fmt::format_to(std::back_inserter(out), "\"{}\":{{\"count\":{}", name, h.count());
  if (h.count() == 0) {
    out += ",\"p50\":null,\"p99\":null,\"p999\":null,\"max\":null,\"mean\":null}";
    return;
  }
  fmt::format_to(std::back_inserter(out),
                 ",\"p50\":{:.3f},\"p99\":{:.3f},\"p999\":{:.3f},\"max\":{:.3f},\"mean\":{:.3f}}}",
                 ms(h.quantile(0.50)), ms(h.quantile(0.99)), ms(h.quantile(0.999)), ms(h.max()), h.mean() / 1e6);
}

void print_latency(std::FILE* out, std::string_view name, const Histogram& h) {
  if (h.count() == 0) {
    fmt::print(out, "  {:<22}{:>9}{:>10}{:>10}{:>10}{:>10}\n", name, 0, "-", "-", "-", "-");
    return;
  }
  fmt::print(out, "  {:<22}{:>9}{:>10.3f}{:>10.3f}{:>10.3f}{:>10.3f}\n", name, h.count(), ms(h.quantile(0.50)),
             ms(h.quantile(0.99)), ms(h.quantile(0.999)), ms(h.max()));
}

void print_count_map(std::FILE* out, std::string_view title, const CountMap& map) {
  fmt::print(out, "{:<16}", title);
  if (map.empty()) fmt::print(out, "-");
  bool first = true;
  for (const auto& [key, count] : map) {
    fmt::print(out, "{}{} {}", first ? "" : ", ", key, count);
    first = false;
  }
  fmt::print(out, "\n");
}

}  // namespace

std::string_view tls_mode_name(TlsMode mode) {
  switch (mode) {
    case TlsMode::kNone:
      return "none";
    case TlsMode::kStarttls:
      return "starttls";
    case TlsMode::kImplicit:
      return "implicit";
  }
  return "unknown";
}

std::string json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (byte < 0x20 || byte > 0x7e) {
          // Bytes above 0x7e are shown as the Latin-1 code point of the same
          // value: server text need not be valid UTF-8, and JSON must be.
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(byte));
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string json_report(const LoadgenConfig& config, const RunStats& stats, double elapsed_s) {
  std::string out;
  const std::uint64_t errors_total = stats.sessions_failed;
  add(out, "{{\"elapsed_s\":{:.3f}", elapsed_s);
  add(out, ",\"config\":{{\"server\":\"{}\",\"tls\":\"{}\",\"threads\":{},\"concurrency\":{}",
      json_escape(config.server_text), tls_mode_name(config.tls), config.threads, config.concurrency);
  add(out, ",\"rate\":{:.3f},\"sessions\":{},\"duration_s\":{:.3f},\"messages_per_session\":{}", config.rate,
      config.sessions, config.duration_s, config.messages_per_session);
  add(out, ",\"message_size\":{},\"recipients\":{},\"pipelining\":{},\"idle\":{},\"hold_s\":{:.3f}}}",
      config.message_size, config.recipients.size(), config.pipelining_allowed ? "true" : "false", config.idle_sessions,
      config.hold_s);
  add(out, ",\"sessions\":{{\"started\":{},\"ok\":{},\"failed\":{},\"aborted\":{},\"per_s\":{:.3f}}}",
      stats.sessions_started, stats.sessions_ok, stats.sessions_failed, stats.sessions_aborted,
      per_second(stats.sessions_ok, elapsed_s));
  add(out, ",\"messages\":{{\"ok\":{},\"failed\":{},\"per_s\":{:.3f}}}", stats.messages_ok, stats.messages_failed,
      per_second(stats.messages_ok, elapsed_s));
  add(out, ",\"handshakes\":{},\"handshakes_per_s\":{:.3f}", stats.tls_handshakes,
      per_second(stats.tls_handshakes, elapsed_s));
  out += ",\"latency_ms\":{";
  append_latency(out, "connect_to_greeting", stats.connect_to_greeting);
  out += ',';
  append_latency(out, "starttls", stats.starttls);
  out += ',';
  append_latency(out, "data_to_250", stats.data_to_250);
  out += '}';
  if (stats.timeline_enabled) {
    // One entry per second of the run, by the time sessions ended.
    out += ",\"timeline\":[";
    for (std::size_t i = 0; i < stats.timeline.size(); ++i) {
      const TimelineSlot& s = stats.timeline[i];
      add(out, "{}{{\"t\":{},\"sessions_ok\":{},\"sessions_failed\":{},\"session_ms\":{{\"p50\":{:.3f},"
          "\"p90\":{:.3f},\"p99\":{:.3f},\"max\":{:.3f}}}}}",
          i == 0 ? "" : ",", i, s.sessions_ok, s.sessions_failed, static_cast<double>(s.session.quantile(0.5)) / 1e6,
          static_cast<double>(s.session.quantile(0.9)) / 1e6, static_cast<double>(s.session.quantile(0.99)) / 1e6,
          static_cast<double>(s.session.max()) / 1e6);
    }
    out += ']';
  }
  out += ",\"tls\":{\"versions\":";
  append_count_map(out, stats.tls_versions);
  out += ",\"ciphers\":";
  append_count_map(out, stats.tls_ciphers);
  add(out, "}},\"errors\":{{\"total\":{},\"classes\":{{", errors_total);
  for (int i = 0; i < static_cast<int>(ErrorClass::kCount); ++i) {
    add(out, "{}\"{}\":{}", i == 0 ? "" : ",", error_class_name(static_cast<ErrorClass>(i)), stats.error_classes[i]);
  }
  out += "},\"detail\":";
  append_count_map(out, stats.errors);
  out += ",\"samples\":[";
  for (std::size_t i = 0; i < stats.error_samples.size(); ++i) {
    add(out, "{}\"{}\"", i == 0 ? "" : ",", json_escape(stats.error_samples[i]));
  }
  add(out, "]}},\"schedule\":{{\"late\":{},\"missed\":{},\"max_lag_ms\":{:.3f}}}", stats.late_starts,
      stats.missed_starts, ms(stats.max_start_lag_ns));
  add(out, ",\"idle\":{{\"target\":{},\"reached\":{},\"held\":{},\"dropped\":{}}}}}\n", config.idle_sessions,
      stats.idle_reached, stats.idle_held, stats.idle_dropped);
  return out;
}

void print_text_report(std::FILE* out, const LoadgenConfig& config, const RunStats& stats, double elapsed_s) {
  fmt::print(out, "mxedge-loadgen: {} tls={} threads={} concurrency={}{}\n", config.server_text,
             tls_mode_name(config.tls), config.threads, config.concurrency,
             config.open_loop() ? fmt::format(" rate={}/s", config.rate) : std::string());
  fmt::print(out, "{:<16}{:.3f} s\n", "elapsed", elapsed_s);
  fmt::print(out, "{:<16}ok {}  failed {}  aborted {}  ({:.1f}/s)\n", "sessions", stats.sessions_ok,
             stats.sessions_failed, stats.sessions_aborted, per_second(stats.sessions_ok, elapsed_s));
  fmt::print(out, "{:<16}ok {}  failed {}  ({:.1f}/s)\n", "messages", stats.messages_ok, stats.messages_failed,
             per_second(stats.messages_ok, elapsed_s));
  fmt::print(out, "{:<16}{}  ({:.1f}/s)\n", "tls handshakes", stats.tls_handshakes,
             per_second(stats.tls_handshakes, elapsed_s));
  if (config.open_loop()) {
    fmt::print(out, "{:<16}late {}  missed {}  max lag {:.3f} ms\n", "schedule", stats.late_starts, stats.missed_starts,
               ms(stats.max_start_lag_ns));
  }
  if (config.idle_mode()) {
    fmt::print(out, "{:<16}target {}  reached {}  held {}  dropped {}\n", "idle sessions", config.idle_sessions,
               stats.idle_reached, stats.idle_held, stats.idle_dropped);
  }
  fmt::print(out, "latency (ms)            {:>9}{:>10}{:>10}{:>10}{:>10}\n", "count", "p50", "p99", "p99.9", "max");
  print_latency(out, "connect->greeting", stats.connect_to_greeting);
  print_latency(out, config.tls == TlsMode::kImplicit ? "connect->tls" : "starttls", stats.starttls);
  print_latency(out, "data->250", stats.data_to_250);
  print_count_map(out, "tls versions", stats.tls_versions);
  print_count_map(out, "tls ciphers", stats.tls_ciphers);
  if (stats.sessions_failed == 0) {
    fmt::print(out, "{:<16}none\n", "errors");
    return;
  }
  fmt::print(out, "{:<16}{} sessions failed:", "errors", stats.sessions_failed);
  for (int i = 0; i < static_cast<int>(ErrorClass::kCount); ++i) {
    if (stats.error_classes[i] != 0) {
      fmt::print(out, " {} {}", error_class_name(static_cast<ErrorClass>(i)), stats.error_classes[i]);
    }
  }
  fmt::print(out, "\n");
  for (const auto& [key, count] : stats.errors) fmt::print(out, "  {:<30}{}\n", key, count);
  fmt::print(out, "first distinct errors:\n");
  for (const std::string& sample : stats.error_samples) fmt::print(out, "  {}\n", sample);
}

}  // namespace mxedge::loadgen
