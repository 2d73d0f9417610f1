// Socket and TLS I/O for one inbound SMTP session; see inbound_connection.h.
#include "dataplane/worker/inbound_connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "dataplane/tls/tls_context.h"
#include "dataplane/worker/worker.h"
#include "policy/log.h"

namespace mxedge::worker {

InboundConnection::InboundConnection(Worker& worker, int fd, SocketAddress peer, std::shared_ptr<const RuntimeConfig> runtime,
                                     const ListenerRuntime& listener)
    : Timer(&worker.loop()),
      worker_(worker),
      fd_(fd),
      peer_(peer),
      runtime_(std::move(runtime)),
      listener_(listener),
      session_(listener.policy, &worker, peer.ip_text()) {}

InboundConnection::~InboundConnection() {
  if (state_ != State::kClosed) close("destroyed");
}

void InboundConnection::start() {
  started_ms_ = worker_.loop().now_ms();
  last_activity_ms_ = started_ms_;
  worker_.loop().add(fd_, 0, this);
  if (listener_.policy->implicit_tls) {
    state_ = State::kImplicitHandshake;
    begin_handshake();
    return;
  }
  if (runtime_->greeting_delay_ms > 0) {
    state_ = State::kPregreet;
    arm_at(started_ms_ + runtime_->greeting_delay_ms);
    update_interest();
    return;
  }
  // No delay: a client whose bytes are already waiting spoke before the greeting.
  char c;
  if (::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
    session_.refuse("554 5.5.0 " + listener_.policy->hostname + " Protocol error: data sent before greeting");
    after_step();
    return;
  }
  greet();
}

void InboundConnection::greet() {
  state_ = State::kSmtp;
  session_.greet();
  touch();
  if (flush()) after_step();
}

void InboundConnection::touch() {
  last_activity_ms_ = worker_.loop().now_ms();
  rearm();
}

// The next timer event: the idle timeout, or the next data-rate check if that comes first. Activity
// moves the idle timeout but never postpones a due rate check, so a trickling client is still measured.
void InboundConnection::rearm() {
  int64_t next = last_activity_ms_ + current_timeout();
  if (in_data_ && runtime_->min_data_rate > 0) next = std::min(next, rate_check_ms_);
  arm_at(next);
}

int64_t InboundConnection::current_timeout() const {
  return session_.in_data_phase() ? runtime_->data_timeout_ms : runtime_->command_timeout_ms;
}

void InboundConnection::begin_handshake() {
  ssl_ = SSL_new(listener_.ssl_ctx.get());
  if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
    log::error("tls.setup_failed").kv("peer", peer_.to_string()).kv("reason", tls::last_error());
    close("tls setup failed");
    return;
  }
  SSL_set_accept_state(ssl_);
  touch();
  handshake();
}

void InboundConnection::handshake() {
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    smtp::TlsState t = tls::describe(ssl_);
    tls_wants_read_ = tls_wants_write_ = false;
    stats::bump(t.version == "TLSv1.3" ? worker_.counters().tls_handshakes_tls13 : worker_.counters().tls_handshakes_tls12);
    stats::bump(worker_.counters().tls_ciphers[stats::tls_cipher_slot(t.cipher)]);
    if (state_ == State::kImplicitHandshake) {
      session_.tls_handshake_done_implicit(t);
      greet();
      if (state_ == State::kSmtp && ssl_ != nullptr && SSL_has_pending(ssl_)) pump();  // read ahead
    } else {
      session_.tls_started(t);
      state_ = State::kSmtp;
      touch();
      pump();  // a TLS 1.3 client may already have sent its EHLO
    }
    return;
  }
  int err = SSL_get_error(ssl_, rc);
  tls_wants_read_ = err == SSL_ERROR_WANT_READ;
  tls_wants_write_ = err == SSL_ERROR_WANT_WRITE;
  if (tls_wants_read_ || tls_wants_write_) {
    update_interest();
    return;
  }
  stats::bump(worker_.counters().tls_handshake_failures);
  log::info("tls.handshake_failed").kv("worker", worker_.index()).kv("listener", listener_.config.name())
      .kv("peer", peer_.to_string()).kv("reason", err == SSL_ERROR_SYSCALL ? std::string("connection closed") : tls::last_error());
  close("tls handshake failed");
}

void InboundConnection::on_io(uint32_t events) {
  if (state_ == State::kClosed) return;
  switch (state_) {
    case State::kPregreet:
      session_.refuse("554 5.5.0 " + listener_.policy->hostname + " Protocol error: data sent before greeting");
      after_step();
      return;
    case State::kImplicitHandshake:
    case State::kStartTlsHandshake:
      handshake();
      return;
    default:
      break;
  }
  if ((events & (EPOLLERR | EPOLLHUP)) && (state_ == State::kClosing || state_ == State::kStartTlsFlush)) {
    close("peer closed");  // the final reply or the STARTTLS 220 can no longer be delivered
    return;
  }
  if (events & EPOLLOUT) {
    if (!flush()) return;
    if (state_ == State::kStartTlsFlush || state_ == State::kClosing) {
      after_step();
      return;
    }
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLOUT)) pump();
}

void InboundConnection::pump() {
  // A bounded number of reads per turn keeps one fast client from starving the others.
  // With read-ahead OpenSSL may hold records the socket no longer signals: those are drained as well.
  for (int round = 0; (round < 16 || (ssl_ != nullptr && SSL_has_pending(ssl_))) && state_ == State::kSmtp &&
                      session_.want() == smtp::ServerSession::Want::kInput;
       ++round) {
    ssize_t n;
    if (ssl_ != nullptr) {
      int rc = SSL_read(ssl_, worker_.scratch(), static_cast<int>(worker_.scratch_size()));
      if (rc > 0) {
        n = rc;
      } else {
        int err = SSL_get_error(ssl_, rc);
        tls_wants_read_ = err == SSL_ERROR_WANT_READ;
        tls_wants_write_ = err == SSL_ERROR_WANT_WRITE;
        if (tls_wants_read_ || tls_wants_write_) break;
        close(err == SSL_ERROR_ZERO_RETURN ? "peer closed" : "tls error");
        return;
      }
    } else {
      n = ::recv(fd_, worker_.scratch(), worker_.scratch_size(), 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        close(n == 0 ? "peer closed" : "read error");
        return;
      }
    }
    tls_wants_read_ = tls_wants_write_ = false;
    session_.on_input(std::string_view(worker_.scratch(), static_cast<size_t>(n)));
    bool was_in_data = in_data_;
    in_data_ = session_.in_data_phase();
    if (in_data_ && !was_in_data) {
      data_started_ms_ = worker_.loop().now_ms();
      rate_check_ms_ = data_started_ms_ + std::max<int64_t>(runtime_->data_rate_grace_ms, 1000);
    }
    touch();
    if (!flush()) return;
  }
  after_step();
}

bool InboundConnection::flush() {
  std::string& out = session_.output();
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n;
    if (ssl_ != nullptr && state_ != State::kStartTlsFlush) {
      int rc = SSL_write(ssl_, out.data() + off, static_cast<int>(out.size() - off));
      if (rc > 0) {
        n = rc;
      } else {
        int err = SSL_get_error(ssl_, rc);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) break;
        out.clear();
        close("tls write error");
        return false;
      }
    } else {
      n = ::send(fd_, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        out.clear();
        close("write error");
        return false;
      }
    }
    off += static_cast<size_t>(n);
  }
  out.erase(0, off);
  want_write_ = !out.empty();
  if (out.empty() && out.capacity() > 4096) out.shrink_to_fit();
  return true;
}

void InboundConnection::after_step() {
  if (state_ == State::kClosed) return;
  if (!session_.output().empty() && state_ != State::kStartTlsFlush && !flush()) return;
  using Want = smtp::ServerSession::Want;
  switch (session_.want()) {
    case Want::kInput:
      break;
    case Want::kStartTls:
      state_ = State::kStartTlsFlush;
      if (!want_write_) {
        state_ = State::kStartTlsHandshake;
        begin_handshake();
        return;
      }
      break;
    case Want::kCommit: {
      if (state_ == State::kSmtp) {
        smtp::ServerSession::Message m = session_.take_message();
        std::string qid = m.envelope.queue_id;
        auto line = std::make_shared<smtp::Envelope>(m.envelope);
        line->recipients.clear();
        size_t rcpts = m.envelope.recipients.size();
        worker_.spool().stage(std::move(m), [this, line, rcpts](smtp::CommitStatus st) {
          if (st == smtp::CommitStatus::kOk) {
            stats::bump(worker_.counters().messages_accepted);
            auto accepted = log::info("message.accepted");
            accepted.kv("worker", worker_.index()).kv("qid", line->queue_id)
                .kv("listener", line->listener).kv("peer", peer_.to_string()).kv("helo", line->helo)
                .kv("from", "<" + line->mail_from + ">").kv("rcpts", static_cast<uint64_t>(rcpts)).kv("size", line->size)
                .kv("tls", line->tls.active ? line->tls.version : std::string("none"))
                .kv("cipher", line->tls.active ? line->tls.cipher : std::string("none"));
            if (line->requiretls) accepted.kv("requiretls", 1);
            if (line->tls_required_no) accepted.kv("tls_required_no", 1);
            if (!line->tls.client_subject.empty())
              accepted.kv("client_cert", line->tls.client_verified ? "verified" : "unverified").kv("client_subject", line->tls.client_subject);
            worker_.message_committed(line->queue_id);  // inbound TLS-RPT intake, after this turn's replies
          } else {
            stats::bump(worker_.counters().spool_commit_failures);
            log::warning("message.refused").kv("worker", worker_.index()).kv("qid", line->queue_id)
                .kv("peer", peer_.to_string()).kv("reason", st == smtp::CommitStatus::kNoSpace ? "spool full" : "spool write error");
          }
          commit_done(st);
        });
        state_ = State::kSmtp;
      }
      break;
    }
    case Want::kClose:
      state_ = State::kClosing;
      if (!want_write_) {
        close(session_.close_reason());
        return;
      }
      break;
  }
  update_interest();
}

void InboundConnection::commit_done(smtp::CommitStatus status) {
  if (state_ == State::kClosed) return;
  session_.commit_done(status);
  in_data_ = session_.in_data_phase();
  touch();
  if (!flush()) return;
  pump();
}

void InboundConnection::update_interest() {
  if (state_ == State::kClosed) return;
  uint32_t ev = 0;
  switch (state_) {
    case State::kPregreet: ev = EPOLLIN; break;
    case State::kImplicitHandshake:
    case State::kStartTlsHandshake:
      ev = (tls_wants_write_ ? uint32_t{EPOLLOUT} : 0u) | (tls_wants_read_ || !tls_wants_write_ ? uint32_t{EPOLLIN} : 0u);
      break;
    case State::kSmtp:
      if (session_.want() == smtp::ServerSession::Want::kInput) ev |= tls_wants_write_ ? EPOLLOUT : EPOLLIN;
      if (want_write_) ev |= EPOLLOUT;
      break;
    case State::kStartTlsFlush:
    case State::kClosing:
      ev = EPOLLOUT;
      break;
    case State::kClosed: break;
  }
  if (ev != interest_) {
    worker_.loop().modify(fd_, ev, this);
    interest_ = ev;
  }
}

void InboundConnection::on_timer() {
  if (state_ == State::kClosed) return;
  const int64_t now = worker_.loop().now_ms();
  if (state_ == State::kPregreet) {
    greet();
    return;
  }
  if (session_.want() == smtp::ServerSession::Want::kCommit) {
    arm_at(now + 1000);
    return;
  }
  if (now - last_activity_ms_ >= current_timeout()) {
    if (state_ == State::kImplicitHandshake || state_ == State::kStartTlsHandshake) {
      close("tls handshake timeout");
      return;
    }
    if (state_ != State::kSmtp) {
      close("write timeout");  // the peer stopped reading our replies
      return;
    }
    session_.timeout();
    flush();
    after_step();
    return;
  }
  if (in_data_ && runtime_->min_data_rate > 0 && now >= rate_check_ms_) {
    uint64_t elapsed = static_cast<uint64_t>(std::max<int64_t>(1, now - data_started_ms_));
    if (session_.data_bytes() * 1000 / elapsed < runtime_->min_data_rate) {
      session_.data_rate_too_low();
      after_step();
      return;
    }
    rate_check_ms_ = now + 1000;
  }
  rearm();
}

void InboundConnection::shutdown() {
  if (state_ == State::kClosed || state_ == State::kClosing) return;
  if (state_ != State::kSmtp) {
    close("shutdown");
    return;
  }
  session_.shutdown();
  if (flush()) after_step();
}

void InboundConnection::close(std::string_view reason) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  cancel();
  worker_.loop().remove(fd_);
  if (ssl_ != nullptr) {
    if (reason == "quit" || reason == "shutdown") SSL_shutdown(ssl_);  // best effort close_notify
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  // Unread input at close() makes the kernel answer with RST, which can destroy our last reply (a 421
  // or 554) before the client reads it: discard what is already queued first.
  for (int i = 0; i < 16; ++i) {
    if (::recv(fd_, worker_.scratch(), worker_.scratch_size(), MSG_DONTWAIT) <= 0) break;
  }
  ::close(fd_);
  worker_.limits().release(peer_);
  const auto& st = session_.stats();
  const auto& tls = session_.tls();
  auto& c = worker_.counters();
  stats::bump(c.sessions_closed);
  stats::bump(c.messages_refused, st.messages_refused);
  stats::bump(c.recipients_accepted, st.recipients_accepted);
  stats::bump(c.recipients_refused, st.recipients_refused);
  stats::bump(c.protocol_errors, st.errors);
  stats::bump(c.bytes_received, st.bytes_in);
  log::info("session.closed").kv("worker", worker_.index()).kv("listener", listener_.config.name())
      .kv("peer", peer_.to_string()).kv("helo", session_.helo())
      .kv("tls", tls.active ? tls.version : std::string("none")).kv("cipher", tls.active ? tls.cipher : std::string("none"))
      .kv("messages", st.messages_accepted).kv("refused", st.messages_refused)
      .kv("rcpts", st.recipients_accepted).kv("rcpts_refused", st.recipients_refused).kv("errors", st.errors)
      .kv("bytes_in", st.bytes_in).kv("duration_ms", worker_.loop().now_ms() - started_ms_)
      .kv("reason", reason);
  worker_.retire(this);
}

}  // namespace mxedge::worker
