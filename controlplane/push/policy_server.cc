#include "controlplane/push/policy_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "policy/delimited.h"
#include "policy/log.h"

namespace mxedge::push {

namespace pb = mxedge::policy::v1;

namespace {
constexpr size_t kMaxFrame = 1u << 20;  // what a data plane may send in one message
}

struct PolicyServer::Session {
  bufferevent* bev = nullptr;
  std::string in;
  bool greeted = false;
  uint64_t sent_version = 0;
  uint64_t acked_version = 0;
  std::string peer;
};

PolicyServer::PolicyServer(PolicyTable& table, std::string path) : table_(table), path_(std::move(path)) {}

std::unique_ptr<PolicyServer> PolicyServer::listen(struct event_base* base, const std::string& path, PolicyTable& table,
                                                   std::string* error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    *error = "policy socket path '" + path + "' is empty or too long";
    return nullptr;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *error = "policy socket path " + path + " exists and is not a socket";
      return nullptr;
    }
    ::unlink(path.c_str());  // a stale socket of an earlier run
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return nullptr;
  }
  const mode_t old = ::umask(0117);
  const int rc = ::bind(fd, reinterpret_cast<::sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0 || ::listen(fd, 64) != 0) {
    *error = "cannot listen on " + path + ": " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  std::unique_ptr<PolicyServer> s(new PolicyServer(table, path));
  s->base_ = base;
  s->listener_ = evconnlistener_new(base, &PolicyServer::on_accept, s.get(), LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
  if (s->listener_ == nullptr) {
    *error = "evconnlistener_new failed for " + path;
    ::close(fd);
    return nullptr;
  }
  return s;
}

PolicyServer::~PolicyServer() {
  for (auto& [bev, s] : sessions_) bufferevent_free(bev);
  sessions_.clear();
  if (listener_ != nullptr) evconnlistener_free(listener_);
  ::unlink(path_.c_str());
}

void PolicyServer::on_accept(evconnlistener*, int fd, ::sockaddr*, int, void* arg) {
  auto* self = static_cast<PolicyServer*>(arg);
  bufferevent* bev = bufferevent_socket_new(self->base_, fd, BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) {
    ::close(fd);
    return;
  }
  auto s = std::make_unique<Session>();
  s->bev = bev;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
    s->peer = "pid " + std::to_string(cred.pid) + " uid " + std::to_string(cred.uid);
  log::info("policy.session.opened").kv("peer", s->peer);
  ++self->counters_.sessions;
  self->sessions_[bev] = std::move(s);
  bufferevent_setcb(bev, &PolicyServer::on_read, nullptr, &PolicyServer::on_event, self);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

void PolicyServer::close(bufferevent* bev, const std::string& why) {
  auto it = sessions_.find(bev);
  if (it == sessions_.end()) return;
  log::info("policy.session.closed").kv("peer", it->second->peer).kv("acked_version", it->second->acked_version).kv("reason", why);
  sessions_.erase(it);
  bufferevent_free(bev);
}

void PolicyServer::on_event(bufferevent* bev, short what, void* arg) {
  auto* self = static_cast<PolicyServer*>(arg);
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) self->close(bev, (what & BEV_EVENT_EOF) ? "closed by the data plane" : std::strerror(errno));
}

void PolicyServer::on_read(bufferevent* bev, void* arg) {
  auto* self = static_cast<PolicyServer*>(arg);
  auto it = self->sessions_.find(bev);
  if (it == self->sessions_.end()) return;
  Session& s = *it->second;
  evbuffer* input = bufferevent_get_input(bev);
  const size_t n = evbuffer_get_length(input);
  const size_t at = s.in.size();
  s.in.resize(at + n);
  evbuffer_remove(input, s.in.data() + at, n);
  size_t used = 0;
  for (;;) {
    std::string_view payload;
    size_t consumed = 0;
    const auto st = policy::next_frame(std::string_view(s.in).substr(used), kMaxFrame, &payload, &consumed);
    if (st == policy::FrameStatus::kNeedMore) break;
    pb::ToControlplane m;
    if (st != policy::FrameStatus::kFrame || !m.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      ++self->counters_.bad_frames;
      self->close(bev, st == policy::FrameStatus::kTooLarge ? "frame larger than 1 MiB" : "malformed frame");
      return;
    }
    used += consumed;
    self->handle(s, m);
    if (self->sessions_.find(bev) == self->sessions_.end()) return;
  }
  s.in.erase(0, used);
}

void PolicyServer::handle(Session& s, const pb::ToControlplane& m) {
  if (m.has_hello()) {
    s.greeted = true;
    log::info("policy.session.hello").kv("peer", s.peer).kv("have_version", m.hello().have_version()).kv("dataplane", m.hello().dataplane_id());
    send_snapshot(s);
  } else if (m.has_ack()) {
    ++counters_.acks;
    s.acked_version = m.ack().version();
  } else if (m.has_nack()) {
    ++counters_.nacks;
    log::error("policy.nack").kv("peer", s.peer).kv("version", m.nack().version()).kv("need_snapshot", m.nack().need_snapshot()).kv("error", m.nack().error());
    if (m.nack().need_snapshot()) send_snapshot(s);
  } else if (m.has_request()) {
    ++counters_.requests;
    for (const auto& d : m.request().domains()) table_.request(d);
  }
}

void PolicyServer::send(Session& s, const pb::ToDataplane& m) {
  std::string out;
  policy::append_delimited(m, &out);
  bufferevent_write(s.bev, out.data(), out.size());
}

void PolicyServer::send_snapshot(Session& s) {
  pb::ToDataplane m;
  *m.mutable_snapshot() = table_.snapshot();
  m.mutable_snapshot()->set_nonce(++nonce_);
  s.sent_version = m.snapshot().version();
  ++counters_.snapshots_sent;
  send(s, m);
}

void PolicyServer::broadcast(const pb::Delta& delta) {
  for (auto& [bev, sp] : sessions_) {
    Session& s = *sp;
    if (!s.greeted) continue;
    if (s.sent_version != delta.base_version()) {
      send_snapshot(s);
      continue;
    }
    pb::ToDataplane m;
    *m.mutable_delta() = delta;
    m.mutable_delta()->set_nonce(++nonce_);
    s.sent_version = delta.version();
    ++counters_.deltas_sent;
    send(s, m);
  }
}

}  // namespace mxedge::push
