// Stats endpoint on cpp-httplib; see stats_server.h.
#include "dataplane/stats/stats_server.h"

#include <httplib.h>

namespace mxedge::stats {

StatsServer::StatsServer(Renderer render) : render_(std::move(render)), server_(std::make_unique<httplib::Server>()) {
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content("mxedge data plane: see /metrics\n", "text/plain"); });
  server_->new_task_queue = [] { return new httplib::ThreadPool(1); };
}

StatsServer::~StatsServer() { stop(); }

bool StatsServer::start(const SocketAddress& address, std::string* error) {
  std::string host = address.ip_text();
  if (!server_->bind_to_port(host, address.port())) {
    *error = "cannot listen on " + address.to_string() + " for stats";
    return false;
  }
  port_ = address.port();
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "mxedge-stats");
    server_->listen_after_bind();
  });
  return true;
}

void StatsServer::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace mxedge::stats
