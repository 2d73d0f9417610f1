// Prometheus text rendering; see prometheus.h.
#include "dataplane/stats/prometheus.h"

namespace mxedge::stats {

void PrometheusText::family(const std::string& name, const std::string& help, const char* type) {
  out_ += "# HELP mxedge_" + name + " " + help + "\n# TYPE mxedge_" + name + " " + type + "\n";
}

void PrometheusText::counter(const std::string& name, const std::string& help) { family(name, help, "counter"); }
void PrometheusText::gauge(const std::string& name, const std::string& help) { family(name, help, "gauge"); }

void PrometheusText::sample(const std::string& name, const std::string& labels, uint64_t value) {
  out_ += "mxedge_" + name;
  if (!labels.empty()) out_ += "{" + labels + "}";
  out_ += " " + std::to_string(value) + "\n";
}

void render_workers(PrometheusText& out, const std::vector<const WorkerCounters*>& workers) {
  auto per_worker = [&](const std::string& name, auto field) {
    for (size_t w = 0; w < workers.size(); ++w) {
      out.sample(name, "worker=\"" + std::to_string(w) + "\"", (workers[w]->*field).load(std::memory_order_relaxed));
    }
  };
#define MXEDGE_RENDER(name, help)                      \
  out.counter(#name "_total", help);                   \
  per_worker(#name "_total", &WorkerCounters::name);
  MXEDGE_WORKER_COUNTERS(MXEDGE_RENDER)
#undef MXEDGE_RENDER
  out.gauge("sessions_active", "Inbound sessions open now");
  per_worker("sessions_active", &WorkerCounters::sessions_active);
  out.gauge("spool_pending_messages", "Messages in the spool with recipients not yet settled");
  per_worker("spool_pending_messages", &WorkerCounters::spool_pending);
  out.counter("tls_handshakes_by_cipher_total", "Inbound TLS handshakes completed, by cipher suite");
  for (size_t w = 0; w < workers.size(); ++w)
    for (size_t i = 0; i < kTlsCipherNames.size(); ++i) {
      const uint64_t v = workers[w]->tls_ciphers[i].load(std::memory_order_relaxed);
      if (v != 0)
        out.sample("tls_handshakes_by_cipher_total", "worker=\"" + std::to_string(w) + "\",cipher=\"" + std::string(kTlsCipherNames[i]) + "\"", v);
    }
}

}  // namespace mxedge::stats
