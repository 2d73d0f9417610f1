// The control plane's end of the management API (policy/proto/mxedge/mgmt/v1/mgmt.proto), served
// on management.socket by policy/mgmt_socket.h's server (one thread per request).
//
//   answered here     status (with the data plane's part), policy show|list|refresh|purge,
//                     connector list|show|set, reload (own config, then the data plane's),
//                     check (controlplane/analyzer), wizard (controlplane/wizard)
//   forwarded as is   stats, queue, trace, prefix (blocklist / allowlist), rate limit → the data
//                     plane's management.dataplane_socket (dataplane/admin)
//
// Threads: the policy table, the connectors and the config belong to the event base's thread; a
// request thread hands its work there (EventBaseTasks) and waits for the answer. Forwarding, checks
// and the wizard run on the request thread (they are blocking and self-contained).
//
// `connector set` edits the configuration file itself (yaml-cpp: the connector's dane_mode /
// mta_sts_mode nodes; the file is rewritten atomically, comments are not kept, the previous file is
// kept as <file>.bak), validates the result before writing, and applies it at once: the policy table
// recompiles every policy under the new modes and pushes them to the data planes.
#pragma once

#include <event2/event.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>

#include "controlplane/mta_sts/policy_cache.h"
#include "controlplane/push/policy_server.h"
#include "controlplane/push/policy_table.h"
#include "mxedge/config/v1/config.pb.h"
#include "mxedge/mgmt/v1/mgmt.pb.h"
#include "policy/mgmt_socket.h"

namespace mxedge::controlplane {

// Runs functions on an event base's thread for other threads (an eventfd wakes the base).
class EventBaseTasks {
 public:
  explicit EventBaseTasks(event_base* base);
  ~EventBaseTasks();
  EventBaseTasks(const EventBaseTasks&) = delete;
  EventBaseTasks& operator=(const EventBaseTasks&) = delete;

  void post(std::function<void()> fn);
  // Runs fn there and waits; false when it did not run within timeout_ms (the base is stopping).
  template <typename T>
  bool run(std::function<T()> fn, T* out, int timeout_ms = 10000) {
    auto promise = std::make_shared<std::promise<T>>();
    auto result = promise->get_future();
    post([promise, fn = std::move(fn)] { promise->set_value(fn()); });
    if (result.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready) return false;
    *out = result.get();
    return true;
  }

 private:
  static void on_wake(evutil_socket_t fd, short, void* arg);
  int fd_ = -1;
  event* ev_ = nullptr;
  std::mutex mu_;
  std::deque<std::function<void()>> tasks_;
};

struct ManagementDeps {
  event_base* base = nullptr;
  push::PolicyTable* table = nullptr;
  push::PolicyServer* policy_server = nullptr;
  mta_sts::PolicyCache* sts_cache = nullptr;
  std::string config_file;
  int64_t started_at = 0;
  std::string version;
  // Re-reads the configuration file and applies it on the event base's thread (the caller is
  // there); false with *detail when the file is invalid.
  std::function<bool(std::string* detail)> reload;
  // TLS-RPT reports waiting to be sent (`tlsrpt pending`); unset when tlsrpt.reports is off.
  std::function<void(mxedge::mgmt::v1::TlsRptResponse*)> tlsrpt_pending;
};

class Management {
 public:
  explicit Management(ManagementDeps deps);
  mxedge::mgmt::v1::Response handle(const mxedge::mgmt::v1::Request& request, const mgmt::Peer& peer);

 private:
  mxedge::mgmt::v1::Response forward(const mxedge::mgmt::v1::Request& request);
  mxedge::mgmt::v1::Response status();
  mxedge::mgmt::v1::Response policy(const mxedge::mgmt::v1::PolicyRequest& r);
  mxedge::mgmt::v1::Response connector(const mxedge::mgmt::v1::ConnectorRequest& r);
  mxedge::mgmt::v1::Response reload();
  mxedge::mgmt::v1::Response check(const mxedge::mgmt::v1::CheckRequest& r);
  mxedge::mgmt::v1::Response wizard(const mxedge::mgmt::v1::WizardRequest& r);
  config::v1::Config current_config();
  bool on_base(std::function<void()> fn);  // runs fn on the event base's thread and waits
  std::string dataplane_socket();

  ManagementDeps deps_;
  EventBaseTasks tasks_;
  std::mutex config_file_mu_;  // one writer of the configuration file at a time
};

}  // namespace mxedge::controlplane
