// The management API's transport, shared by both planes and mxedgectl: one length-delimited
// mxedge.mgmt.v1.Request and one Response per connection over a Unix stream socket
// (policy/delimited.h framing).
//
// MgmtServer: a thread accepts connections; each connection is served on its own thread (at most
// `max_connections` at once; beyond that the peer gets UNAVAILABLE "busy") so that a slow request (a
// connectivity check with live probes) never holds the others up. Access: the peer's credentials
// (SO_PEERCRED) must be root, the server's own uid, or a user with `admin_group` among its groups;
// anyone else gets PERMISSION_DENIED and is logged. The socket file is created with mode 0660 and
// group `admin_group` when that group exists.
//
// SECURITY: the request size is bounded (1 MiB), reads time out, and nothing a peer sends can stop
// the server; the handler runs only for admitted peers.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "mxedge/mgmt/v1/mgmt.pb.h"

namespace mxedge::mgmt {

struct Peer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string user;  // name from the password database, or the uid
  std::string to_string() const;
};

// Whether `peer` may use a server run by `server_uid` with admin group `admin_group`.
bool peer_is_admin(const Peer& peer, uid_t server_uid, const std::string& admin_group);

inline constexpr size_t kMaxRequestBytes = 1 << 20;
inline constexpr size_t kMaxResponseBytes = 64 << 20;

// An error response.
mxedge::mgmt::v1::Response error_response(mxedge::mgmt::v1::Error::Code code, const std::string& message);

class MgmtServer {
 public:
  using Handler = std::function<mxedge::mgmt::v1::Response(const mxedge::mgmt::v1::Request&, const Peer&)>;

  MgmtServer(std::string name, Handler handler, size_t max_connections = 16);
  ~MgmtServer();  // stop()
  MgmtServer(const MgmtServer&) = delete;
  MgmtServer& operator=(const MgmtServer&) = delete;

  // Binds `path` (a stale socket there is replaced; any other file is an error) and starts serving.
  bool start(const std::string& path, const std::string& admin_group, std::string* error);
  // Stops accepting, waits for requests in progress, removes the socket file.
  void stop();

  uint64_t served() const { return served_.load(); }
  uint64_t denied() const { return denied_.load(); }

 private:
  void accept_loop();
  void serve(int fd);

  std::string name_;  // for logs: "controlplane", "dataplane"
  Handler handler_;
  size_t max_connections_;
  std::string path_, admin_group_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread acceptor_;
  std::mutex mu_;
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> threads_;  // finished ones are joined at the next accept and at stop()
  std::atomic<size_t> active_{0};
  std::atomic<uint64_t> served_{0}, denied_{0};
};

enum class CallStatus { kOk, kUnavailable, kDenied, kFailed };

// One request/response exchange with the server at `path`. kUnavailable: no server listens (missing
// socket, refused); kDenied: the socket file's permissions refused us; kFailed: the exchange broke (timeout, closed early, bad frame). *error says why.
CallStatus call(const std::string& path, const mxedge::mgmt::v1::Request& request, mxedge::mgmt::v1::Response* response,
                int timeout_ms, std::string* error);

}  // namespace mxedge::mgmt
