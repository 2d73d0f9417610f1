// A configuration snapshot as the workers use it: the validated protobuf config plus everything
// derived from it once (TLS contexts, resolved next-hop addresses, session policies). Snapshots are
// immutable and shared; a reload builds a new one and each worker swaps to it at its next turn.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/smtp/server_session.h"
#include "dataplane/tls/tls_context.h"
#include "dataplane/xdp/ip_prefix.h"
#include "mxedge/config/v1/config.pb.h"
#include "policy/socket_address.h"

namespace mxedge::worker {

struct ListenerRuntime {
  mxedge::config::v1::Listener config;
  SocketAddress address;
  std::shared_ptr<const smtp::SessionPolicy> policy;
  tls::ContextPtr ssl_ctx;  // null when the listener has no TLS
  std::vector<xdp::IpPrefix> allowed_networks;  // outbound intake: who may connect (empty: anyone)
};

struct RelayRuntime {
  std::string host;
  uint16_t port = 25;
  std::vector<SocketAddress> addresses;
  mxedge::config::v1::NextHopTls tls = mxedge::config::v1::NEXT_HOP_TLS_OPPORTUNISTIC;
  tls::ContextPtr ssl_ctx;
  std::string verify_name;  // certificate name checked with NEXT_HOP_TLS_VERIFY
  std::string sni;          // empty when the host is an address literal
  uint32_t connections_per_worker = 2;
  int64_t connect_timeout_ms = 30000;
  int64_t command_timeout_ms = 300000;
  int64_t retry_min_ms = 30000;
  int64_t retry_max_ms = 600000;
};

struct OutboundRuntime {
  bool enabled = false;
  std::string ca_file;
  int64_t retry_min_ms = 60000;
  int64_t retry_max_ms = 3600000;
  uint32_t connections_per_destination = 2;
  int64_t connect_timeout_ms = 30000;
  int64_t command_timeout_ms = 300000;
  int64_t policy_wait_ms = 30000;
  int64_t queue_lifetime_ms = 86400000;
  int64_t delay_warning_ms = 4 * 3600000;
  int64_t trace_retention_s = 7 * 86400;
};

struct RuntimeConfig {
  mxedge::config::v1::Config config;
  std::vector<ListenerRuntime> listeners;
  RelayRuntime relay;
  OutboundRuntime outbound;
  int64_t command_timeout_ms = 300000;
  int64_t data_timeout_ms = 180000;
  uint32_t min_data_rate = 0;
  int64_t data_rate_grace_ms = 30000;
  int64_t greeting_delay_ms = 0;
  uint32_t connections_per_source = 50;
  uint32_t sessions_total = 20000;
};

// Builds everything derived from config. Fails (null, *error set) when a certificate or key cannot be
// loaded or the next hop's name does not resolve.
std::shared_ptr<const RuntimeConfig> build_runtime(const mxedge::config::v1::Config& config, std::string* error);


}  // namespace mxedge::worker
