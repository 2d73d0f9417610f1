#include "policy/mgmt_socket.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#include "policy/delimited.h"
#include "policy/log.h"

namespace mxedge::mgmt {

// mxedge::mgmt::v1 (the protocol) is visible here as v1.

std::string Peer::to_string() const {
  return user + " (uid " + std::to_string(uid) + ", pid " + std::to_string(pid) + ")";
}

bool peer_is_admin(const Peer& peer, uid_t server_uid, const std::string& admin_group) {
  if (peer.uid == 0 || peer.uid == server_uid) return true;
  if (admin_group.empty()) return false;
  std::vector<char> buf(16384);
  group gr{};
  group* grp = nullptr;
  if (::getgrnam_r(admin_group.c_str(), &gr, buf.data(), buf.size(), &grp) != 0 || grp == nullptr) return false;
  const gid_t admin = grp->gr_gid;
  if (peer.gid == admin) return true;
  // Supplementary groups of the peer's process (/proc/<pid>/status "Groups:"), which is what the
  // process runs with; the password database's view could be stale.
  const std::string status_path = "/proc/" + std::to_string(peer.pid) + "/status";
  const int fd = ::open(status_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::string text;
  char chunk[4096];
  ssize_t n;
  while ((n = ::read(fd, chunk, sizeof chunk)) > 0) text.append(chunk, static_cast<size_t>(n));
  ::close(fd);
  const size_t at = text.find("\nGroups:");
  if (at == std::string::npos) return false;
  const size_t end = text.find('\n', at + 1);
  const std::string line = text.substr(at + 8, end == std::string::npos ? std::string::npos : end - at - 8);
  size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
    size_t stop = pos;
    while (stop < line.size() && line[stop] >= '0' && line[stop] <= '9') ++stop;
    if (stop == pos) break;
    if (static_cast<gid_t>(std::stoul(line.substr(pos, stop - pos))) == admin) return true;
    pos = stop;
  }
  return false;
}

v1::Response error_response(v1::Error::Code code, const std::string& message) {
  v1::Response r;
  r.mutable_error()->set_code(code);
  r.mutable_error()->set_message(message);
  return r;
}

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Waits for `events` on fd until deadline; false on timeout or error.
bool wait_fd(int fd, short events, int64_t deadline_ms) {
  while (true) {
    const int64_t left = deadline_ms - now_ms();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

bool write_all(int fd, const std::string& data, int64_t deadline_ms, std::string* error) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_fd(fd, POLLOUT, deadline_ms)) {
        *error = "timed out sending";
        return false;
      }
      continue;
    }
    *error = std::string("send: ") + std::strerror(errno);
    return false;
  }
  return true;
}

// Reads one frame; false with *error on timeout, EOF, or a bad frame.
bool read_frame(int fd, size_t max_size, int64_t deadline_ms, std::string* payload, std::string* error) {
  std::string buffer;
  char chunk[16384];
  while (true) {
    std::string_view frame;
    size_t consumed = 0;
    switch (policy::next_frame(buffer, max_size, &frame, &consumed)) {
      case policy::FrameStatus::kFrame:
        payload->assign(frame);
        return true;
      case policy::FrameStatus::kTooLarge:
        *error = "message larger than " + std::to_string(max_size) + " bytes";
        return false;
      case policy::FrameStatus::kBadLength:
        *error = "bad length prefix";
        return false;
      case policy::FrameStatus::kNeedMore:
        break;
    }
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      buffer.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      *error = buffer.empty() ? "connection closed without a message" : "connection closed in the middle of a message";
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_fd(fd, POLLIN, deadline_ms)) {
        *error = "timed out waiting for a message";
        return false;
      }
      continue;
    }
    *error = std::string("recv: ") + std::strerror(errno);
    return false;
  }
}

bool fill_address(const std::string& path, sockaddr_un* addr, std::string* error) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr->sun_path) {
    *error = "socket path '" + path + "' is empty or too long";
    return false;
  }
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

std::string user_name(uid_t uid) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* p = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &p) == 0 && p != nullptr) return p->pw_name;
  return std::to_string(uid);
}

}  // namespace

MgmtServer::MgmtServer(std::string name, Handler handler, size_t max_connections)
    : name_(std::move(name)), handler_(std::move(handler)), max_connections_(max_connections) {}

MgmtServer::~MgmtServer() { stop(); }

bool MgmtServer::start(const std::string& path, const std::string& admin_group, std::string* error) {
  sockaddr_un addr{};
  if (!fill_address(path, &addr, error)) return false;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *error = "management socket path " + path + " exists and is not a socket";
      return false;
    }
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (probe >= 0) ::close(probe);
    if (live) {
      *error = "management socket " + path + " is served by another process (is another instance running?)";
      return false;
    }
    ::unlink(path.c_str());  // a stale socket of an earlier run
  } else {
    // The directory (e.g. /run/mxedge) is created when missing; systemd's RuntimeDirectory= does
    // the same for the appliance.
    const std::string dir = path.substr(0, path.rfind('/'));
    std::error_code ec;
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  const mode_t old = ::umask(0117);
  const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0 || ::listen(fd, 64) != 0) {
    *error = "cannot listen on " + path + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  if (!admin_group.empty()) {
    std::vector<char> buf(16384);
    group gr{};
    group* grp = nullptr;
    if (::getgrnam_r(admin_group.c_str(), &gr, buf.data(), buf.size(), &grp) == 0 && grp != nullptr) {
      if (::chown(path.c_str(), static_cast<uid_t>(-1), grp->gr_gid) != 0)
        log::warning("mgmt.chgrp_failed").kv("socket", path).kv("group", admin_group).kv("reason", std::strerror(errno));
    } else {
      log::info("mgmt.admin_group_missing").kv("socket", path).kv("group", admin_group);
    }
  }
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    ::close(fd);
    ::unlink(path.c_str());
    return false;
  }
  path_ = path;
  admin_group_ = admin_group;
  listen_fd_ = fd;
  acceptor_ = std::thread([this] { accept_loop(); });
  return true;
}

void MgmtServer::stop() {
  if (listen_fd_ < 0) return;
  const char x = 'x';
  if (::write(stop_pipe_[1], &x, 1) < 0) {
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::list<Worker> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads.swap(threads_);
  }
  for (auto& w : threads) w.thread.join();
  ::close(listen_fd_);
  listen_fd_ = -1;
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
  stop_pipe_[0] = stop_pipe_[1] = -1;
  ::unlink(path_.c_str());
}

void MgmtServer::accept_loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    const int rc = ::poll(fds, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      log::error("mgmt.poll_failed").kv("server", name_).kv("reason", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (active_.load() >= max_connections_) {
      std::string out, ignored;
      policy::append_delimited(error_response(v1::Error::UNAVAILABLE, "the " + name_ + " is busy (too many management requests)"), &out);
      write_all(fd, out, now_ms() + 1000, &ignored);
      ::close(fd);
      continue;
    }
    ++active_;
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back(Worker{std::thread([this, fd, done] {
                                serve(fd);
                                --active_;
                                done->store(true);
                              }),
                              done});
  }
}

void MgmtServer::serve(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  Peer peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer.pid = cred.pid;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
    peer.user = user_name(cred.uid);
  } else {
    ::close(fd);
    return;
  }
  std::string payload, error, out;
  v1::Request request;
  v1::Response response;
  // The request is read (bounded) before the peer is judged, so that a refused client still gets
  // its answer instead of a reset connection.
  const bool got = read_frame(fd, kMaxRequestBytes, now_ms() + 10000, &payload, &error);
  if (!peer_is_admin(peer, ::geteuid(), admin_group_)) {
    ++denied_;
    log::warning("mgmt.denied").kv("server", name_).kv("peer", peer.to_string()).kv("group", admin_group_);
    response = error_response(v1::Error::PERMISSION_DENIED, "permission denied: " + peer.user + " is not root and not in group '" +
                                                                   admin_group_ + "'");
  } else if (!got) {
    log::warning("mgmt.bad_request").kv("server", name_).kv("peer", peer.to_string()).kv("reason", error);
    response = error_response(v1::Error::INVALID_ARGUMENT, "bad request: " + error);
  } else if (!request.ParseFromString(payload)) {
    log::warning("mgmt.bad_request").kv("server", name_).kv("peer", peer.to_string()).kv("reason", "does not parse");
    response = error_response(v1::Error::INVALID_ARGUMENT, "bad request: not an mxedge.mgmt.v1.Request");
  } else {
    response = handler_(request, peer);
    ++served_;
  }
  policy::append_delimited(response, &out);
  if (!write_all(fd, out, now_ms() + 10000, &error))
    log::warning("mgmt.reply_failed").kv("server", name_).kv("peer", peer.to_string()).kv("reason", error);
  ::close(fd);
}

CallStatus call(const std::string& path, const v1::Request& request, v1::Response* response, int timeout_ms, std::string* error) {
  sockaddr_un addr{};
  if (!fill_address(path, &addr, error)) return CallStatus::kUnavailable;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return CallStatus::kFailed;
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EACCES) {
      *error = "cannot connect to " + path + ": permission denied (root or the admin group only)";
      return CallStatus::kDenied;
    }
    *error = "cannot connect to " + path + ": " + std::strerror(e) + " (is the daemon running?)";
    return CallStatus::kUnavailable;
  }
  const int64_t deadline = now_ms() + timeout_ms;
  std::string out, payload;
  policy::append_delimited(request, &out);
  // A server that answers before reading (or refuses) may have closed already: the answer still counts.
  std::string write_error;
  const bool sent = write_all(fd, out, deadline, &write_error);
  bool ok = read_frame(fd, kMaxResponseBytes, deadline, &payload, error);
  if (!ok && !sent) *error = write_error;
  ::close(fd);
  if (!ok) return CallStatus::kFailed;
  if (!response->ParseFromString(payload)) {
    *error = "the reply is not an mxedge.mgmt.v1.Response";
    return CallStatus::kFailed;
  }
  return CallStatus::kOk;
}

}  // namespace mxedge::mgmt
