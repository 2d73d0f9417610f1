// The data plane's end of the management API (policy/proto/mxedge/mgmt/v1/mgmt.proto): status, stats,
// the queue, the message trace, the fast path's lists and rate limit, and reload. The control plane forwards
// these requests here unchanged over management.dataplane_socket (policy/mgmt_socket.h serves it).
//
// Threads: requests arrive on the management server's threads. Counters are read as they are (each
// worker is the only writer of its own); the queue is read and changed on each worker's own thread
// (posted to its event loop, answered through a future with a timeout), so the message path takes no
// lock; the fast path (XDP or DPDK) is used under the main thread's fast-path mutex; reload runs the same code
// as SIGHUP, serialised with it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dataplane/policy/policy_client.h"
#include "dataplane/policy/policy_store.h"
#include "dataplane/worker/runtime_config.h"
#include "dataplane/worker/worker.h"
#include "dataplane/xdp/fast_path.h"
#include "mxedge/mgmt/v1/mgmt.pb.h"
#include "policy/mgmt_socket.h"

namespace mxedge::dataplane {

struct AdminDeps {
  std::vector<worker::Worker*> workers;
  std::unique_ptr<xdp::FastPath>* fast_path = nullptr;  // may hold null (no fast path)
  std::mutex* fast_path_mu = nullptr;
  PolicyStore* policies = nullptr;       // null when outbound delivery is off
  PolicyClient* policy_client = nullptr;
  std::function<std::shared_ptr<const worker::RuntimeConfig>()> runtime;  // the current config
  std::function<bool(std::string* detail)> reload;                         // as SIGHUP does
  int64_t started_at = 0;  // Unix seconds
  std::string version;
};

class Admin {
 public:
  explicit Admin(AdminDeps deps) : deps_(std::move(deps)) {}
  mxedge::mgmt::v1::Response handle(const mxedge::mgmt::v1::Request& request, const mgmt::Peer& peer);

 private:
  mxedge::mgmt::v1::Response status();
  mxedge::mgmt::v1::Response stats();
  mxedge::mgmt::v1::Response queue(const mxedge::mgmt::v1::QueueRequest& r);
  mxedge::mgmt::v1::Response trace(const mxedge::mgmt::v1::TraceRequest& r);
  mxedge::mgmt::v1::Response prefix(const mxedge::mgmt::v1::PrefixRequest& r);
  mxedge::mgmt::v1::Response rate_limit(const mxedge::mgmt::v1::RateLimitRequest& r);
  mxedge::mgmt::v1::Response reload();
  mxedge::mgmt::v1::Response submit(const mxedge::mgmt::v1::SubmitRequest& r);
  mxedge::mgmt::v1::Response tls_outcomes(const mxedge::mgmt::v1::TlsOutcomesRequest& r);
  mxedge::mgmt::v1::Response tlsrpt(const mxedge::mgmt::v1::TlsRptRequest& r);

  AdminDeps deps_;
  std::atomic<unsigned> next_submit_worker_{0};
};

}  // namespace mxedge::dataplane
