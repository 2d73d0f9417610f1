// Per-worker counters. Each worker owns one cache-line-aligned block and is its only writer (relaxed
// load+store, no locked instructions on the message path); readers (the stats endpoint) sum the blocks
// when asked. Names here are the Prometheus metric names without the mxedge_ prefix.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace mxedge::stats {

// X(name, help)
#define MXEDGE_WORKER_COUNTERS(X)                                                                  \
  X(connections_accepted, "Inbound connections accepted")                                           \
  X(connections_refused_source, "Connections refused: too many from one source")                   \
  X(connections_refused_total, "Connections refused: too many sessions in total")                  \
  X(incoming_cpu_mismatch, "Accepted connections whose SO_INCOMING_CPU was not the worker's CPU")  \
  X(sessions_closed, "Inbound sessions closed")                                                     \
  X(tls_handshakes_tls12, "Inbound TLS 1.2 handshakes completed")                                   \
  X(tls_handshakes_tls13, "Inbound TLS 1.3 handshakes completed")                                   \
  X(tls_handshake_failures, "Inbound TLS handshakes that failed")                                   \
  X(messages_accepted, "Messages acknowledged with 250 after they were durable")                   \
  X(messages_refused, "Messages refused at end of data (content, size, or spool failure)")         \
  X(recipients_accepted, "Recipients accepted")                                                     \
  X(recipients_refused, "Recipients refused")                                                       \
  X(protocol_errors, "SMTP replies with a 4xx or 5xx code to a client error")                       \
  X(bytes_received, "Bytes received from SMTP clients (after TLS)")                                 \
  X(spool_commits, "Group commits (one fdatasync each)")                                            \
  X(spool_commit_failures, "Messages whose spool write or flush failed")                            \
  X(messages_relayed, "Messages whose recipients were all accepted by the next hop")                \
  X(messages_deferred, "Delivery attempts deferred (4xx or connection failure)")                    \
  X(recipients_failed, "Recipients the next hop refused permanently")                               \
  X(next_hop_failures, "Connections to the next hop that failed before a greeting")                \
  X(outbound_delivered, "Outbound recipients delivered over a connection that satisfied their policy") \
  X(outbound_deferred, "Outbound jobs deferred (policy defer, every MX host failed, 4xx)")           \
  X(outbound_failed, "Outbound recipients failed (null MX, NXDOMAIN, 5xx)")                          \
  X(outbound_host_failures, "Connections to MX hosts that failed (connect, STARTTLS, TLS policy)")  \
  X(tlsrpt_reports_parsed, "TLS-RPT reports received at tlsrpt.inbound.mailboxes and parsed")       \
  X(tlsrpt_reports_rejected, "Mail to tlsrpt.inbound.mailboxes whose report could not be parsed")

// Inbound TLS handshakes by cipher suite: the suites tls_context.cc offers, and "other".
inline constexpr std::array<std::string_view, 10> kTlsCipherNames = {
    "TLS_AES_256_GCM_SHA384",        "TLS_AES_128_GCM_SHA256",        "TLS_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES256-GCM-SHA384",   "ECDHE-RSA-AES128-GCM-SHA256",   "ECDHE-RSA-CHACHA20-POLY1305",
    "other"};
inline size_t tls_cipher_slot(std::string_view name) {
  for (size_t i = 0; i + 1 < kTlsCipherNames.size(); ++i)
    if (kTlsCipherNames[i] == name) return i;
  return kTlsCipherNames.size() - 1;
}

struct alignas(64) WorkerCounters {
#define MXEDGE_DECLARE(name, help) std::atomic<uint64_t> name{0};
  MXEDGE_WORKER_COUNTERS(MXEDGE_DECLARE)
#undef MXEDGE_DECLARE
  // Gauges, set by the owner.
  std::atomic<uint64_t> sessions_active{0};
  std::atomic<uint64_t> spool_pending{0};
  std::array<std::atomic<uint64_t>, kTlsCipherNames.size()> tls_ciphers{};
};

// Single-writer increment: a plain load and store, which other threads may read at any time.
inline void bump(std::atomic<uint64_t>& c, uint64_t n = 1) { c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
inline void set(std::atomic<uint64_t>& c, uint64_t v) { c.store(v, std::memory_order_relaxed); }

}  // namespace mxedge::stats
