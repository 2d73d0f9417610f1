// Renders the data plane's counters in the Prometheus text exposition format (version 0.0.4): worker
// counters summed over workers and also per worker, plus any extra families a caller adds (the XDP
// fast path's per-CPU counters).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "dataplane/stats/counters.h"

namespace mxedge::stats {

class PrometheusText {
 public:
  void counter(const std::string& name, const std::string& help);
  void gauge(const std::string& name, const std::string& help);
  // labels: `worker="0",cpu="1"` (already escaped) or empty.
  void sample(const std::string& name, const std::string& labels, uint64_t value);
  const std::string& text() const { return out_; }

 private:
  void family(const std::string& name, const std::string& help, const char* type);
  std::string out_;
};

void render_workers(PrometheusText& out, const std::vector<const WorkerCounters*>& workers);

}  // namespace mxedge::stats
