// The data plane's local stats endpoint: GET /metrics answers Prometheus text, on its own thread
// (cpp-httplib), reading the workers' counters without stopping them. Bind it to loopback or a
// management network only; it has no authentication.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "policy/socket_address.h"

namespace httplib {
class Server;
}

namespace mxedge::stats {

class StatsServer {
 public:
  using Renderer = std::function<std::string()>;
  explicit StatsServer(Renderer render);
  ~StatsServer();
  StatsServer(const StatsServer&) = delete;
  StatsServer& operator=(const StatsServer&) = delete;

  // Binds now (so errors are reported at start-up) and serves on a background thread.
  bool start(const SocketAddress& address, std::string* error);
  void stop();
  uint16_t port() const { return port_; }

 private:
  Renderer render_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace mxedge::stats
