#include "dataplane/policy/policy_client.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "policy/delimited.h"
#include "policy/log.h"

namespace mxedge::dataplane {

namespace pb = mxedge::policy::v1;

namespace {
constexpr size_t kMaxFrame = 256u << 20;  // a snapshot of many policies
}

PolicyClient::PolicyClient(PolicyStore& store, std::string socket_path, std::string id)
    : store_(store), path_(std::move(socket_path)), id_(std::move(id)) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

PolicyClient::~PolicyClient() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void PolicyClient::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void PolicyClient::stop() {
  stopping_ = true;
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void PolicyClient::request(const std::string& domain) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pending_.insert(domain).second) return;
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

bool PolicyClient::send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      if (stopping_) return false;
      continue;
    }
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

void PolicyClient::run() {
  int backoff_ms = 200;
  bool reported_down = false;
  while (!stopping_) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      connected_ = true;
      backoff_ms = 200;
      log::info("policy.link.connected").kv("socket", path_).kv("have_version", store_.version());
      reported_down = false;
      const bool go_on = session(fd);
      connected_ = false;
      ::close(fd);
      if (!go_on) break;
      log::warning("policy.link.lost").kv("socket", path_).kv("version", store_.version());
    } else {
      const std::string why = std::strerror(errno);
      if (fd >= 0) ::close(fd);
      if (!reported_down) {
        log::warning("policy.link.down").kv("socket", path_).kv("reason", why).kv("version", store_.version());
        reported_down = true;
      }
    }
    // Back off, but wake at once for stop().
    pollfd p{wake_fd_, POLLIN, 0};
    ::poll(&p, 1, backoff_ms);
    backoff_ms = std::min(backoff_ms * 2, 5000);
  }
}

bool PolicyClient::session(int fd) {
  std::string out;
  pb::ToControlplane hello;
  hello.mutable_hello()->set_have_version(store_.version());
  hello.mutable_hello()->set_dataplane_id(id_);
  policy::append_delimited(hello, &out);
  if (!send_all(fd, out)) return !stopping_;
  std::string in;
  char buf[65536];
  bool first = true;
  for (;;) {
    // Requests: everything pending goes out in one message (and again after a reconnect: pending_
    // is only cleared once sent).
    std::set<std::string> req;
    {
      std::lock_guard<std::mutex> lock(mu_);
      req.swap(pending_);
    }
    if (!req.empty() && !first) {
      pb::ToControlplane m;
      for (const auto& d : req) m.mutable_request()->add_domains(d);
      out.clear();
      policy::append_delimited(m, &out);
      if (!send_all(fd, out)) {
        std::lock_guard<std::mutex> lock(mu_);
        pending_.insert(req.begin(), req.end());
        return !stopping_;
      }
    } else if (!req.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.insert(req.begin(), req.end());  // after the snapshot
    }
    pollfd p[2] = {{fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(p, 2, 1000) < 0 && errno != EINTR) return !stopping_;
    if (stopping_) return false;
    if (p[1].revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof v);
    }
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;
    in.append(buf, static_cast<size_t>(n));
    size_t used = 0;
    for (;;) {
      std::string_view payload;
      size_t consumed = 0;
      const auto st = policy::next_frame(std::string_view(in).substr(used), kMaxFrame, &payload, &consumed);
      if (st == policy::FrameStatus::kNeedMore) break;
      pb::ToDataplane m;
      if (st != policy::FrameStatus::kFrame || !m.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        log::error("policy.link.bad_frame").kv("socket", path_);
        return true;  // reconnect: the stream cannot be trusted any more
      }
      used += consumed;
      auto answer = store_.apply(m);
      const bool snap = m.has_snapshot();
      if (answer.has_ack()) {
        log::info("policy.applied")
            .kv("kind", snap ? "snapshot" : "delta")
            .kv("version", answer.ack().version())
            .kv("policies", static_cast<uint64_t>(store_.current()->policies.size()));
      } else {
        log::error("policy.refused").kv("kind", snap ? "snapshot" : "delta").kv("error", answer.nack().error());
      }
      if (snap) first = false;
      if (answer.has_ack() && on_change_) on_change_();
      out.clear();
      policy::append_delimited(answer, &out);
      if (!send_all(fd, out)) return !stopping_;
    }
    in.erase(0, used);
  }
}

}  // namespace mxedge::dataplane
