// report.h - mxedge-loadgen's end-of-run report, for people and for scripts.
//
// DESCRIPTION
//   The same figures in two forms: an aligned text summary, and one JSON
//   object whose keys are stable (benchmark scripts read it with python3's
//   json module). Latencies are in milliseconds, rates per second of elapsed
//   wall time. A latency with no samples is reported as null in JSON.
//
//   JSON layout:
//     elapsed_s, config{...}, sessions{started,ok,failed,aborted,per_s},
//     messages{ok,failed,per_s}, handshakes, handshakes_per_s,
//     latency_ms{connect_to_greeting,starttls,data_to_250:
//                {count,p50,p99,p999,max,mean}},
//     tls{versions{name:count},ciphers{name:count}},
//     errors{total,classes{connect,tls,timeout,reply,closed,protocol},
//            detail{"phase.kind":count},samples[...]},
//     schedule{late,missed,max_lag_ms}, idle{target,reached,held,dropped}
//
// STANDARDS
//   RFC 8259 (JSON). The writer is hand-made to avoid a dependency; every
//   string goes through json_escape().
//
// SECURITY
//   Error samples and cipher names may hold server-chosen text. json_escape()
//   escapes quotes, backslashes, controls and every byte above 0x7e, so the
//   output is always valid ASCII JSON whatever the server sent.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "loadgen_config.h"
#include "run_stats.h"

namespace mxedge::loadgen {

std::string json_escape(std::string_view text);

std::string json_report(const LoadgenConfig& config, const RunStats& stats, double elapsed_s);

void print_text_report(std::FILE* out, const LoadgenConfig& config, const RunStats& stats, double elapsed_s);

std::string_view tls_mode_name(TlsMode mode);

}  // namespace mxedge::loadgen
