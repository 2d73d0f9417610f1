// The control plane's end of the policy link: a Unix socket server on the resolver's event base that
// speaks mxedge.policy.v1 (length-delimited) with each connected data plane.
//
//   data plane: Hello{have_version}  → server: Snapshot (the whole table; nonce)
//   table change                      → server: Delta{base_version, version} to every greeted session
//                                       (a Snapshot instead when the session is not at base_version)
//   data plane: Ack / Nack            → Nack{need_snapshot}: Snapshot; other Nacks are logged as errors
//   data plane: PolicyRequest{domains} → PolicyTable::request, answered later by a Delta
// A frame that is too large or does not parse closes that session (logged); nothing a data plane
// sends can stop the server.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "controlplane/push/policy_table.h"
#include "mxedge/policy/v1/policy.pb.h"

struct event_base;
struct evconnlistener;
struct bufferevent;
struct sockaddr;

namespace mxedge::push {

struct ServerCounters {
  uint64_t sessions = 0, snapshots_sent = 0, deltas_sent = 0, acks = 0, nacks = 0, requests = 0, bad_frames = 0;
};

class PolicyServer {
 public:
  // Binds `path` (a stale socket file there is replaced; any other file is an error), mode 0660.
  static std::unique_ptr<PolicyServer> listen(struct event_base* base, const std::string& path, PolicyTable& table,
                                              std::string* error);
  ~PolicyServer();

  void broadcast(const mxedge::policy::v1::Delta& delta);
  size_t sessions() const { return sessions_.size(); }
  const ServerCounters& counters() const { return counters_; }

 private:
  struct Session;
  PolicyServer(PolicyTable& table, std::string path);
  static void on_accept(evconnlistener* l, int fd, ::sockaddr* addr, int len, void* arg);
  static void on_read(bufferevent* bev, void* arg);
  static void on_event(bufferevent* bev, short what, void* arg);
  void handle(Session& s, const mxedge::policy::v1::ToControlplane& m);
  void send_snapshot(Session& s);
  void send(Session& s, const mxedge::policy::v1::ToDataplane& m);
  void close(bufferevent* bev, const std::string& why);

  PolicyTable& table_;
  std::string path_;
  struct event_base* base_ = nullptr;
  evconnlistener* listener_ = nullptr;
  std::unordered_map<bufferevent*, std::unique_ptr<Session>> sessions_;
  uint64_t nonce_ = 0;
  ServerCounters counters_;
};

}  // namespace mxedge::push
