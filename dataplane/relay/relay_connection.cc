// SMTP client connection to the next hop; see relay_connection.h.
#include "dataplane/relay/relay_connection.h"

#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "dataplane/tls/tls_context.h"
#include "policy/log.h"

namespace mxedge::relay {
namespace {

constexpr int64_t kIdleQuitMs = 5000;
constexpr size_t kBodyWindow = 64 << 10;
constexpr size_t kBodyChunk = 32 << 10;


std::string notify_text(uint32_t bits) {
  if (bits & smtp::kNotifyNever) return "NEVER";
  std::string s;
  auto add = [&](uint32_t b, const char* name) {
    if (bits & b) {
      if (!s.empty()) s += ",";
      s += name;
    }
  };
  add(smtp::kNotifySuccess, "SUCCESS");
  add(smtp::kNotifyFailure, "FAILURE");
  add(smtp::kNotifyDelay, "DELAY");
  return s;
}

}  // namespace

RelayConnection::RelayConnection(ConnectionOwner& owner) : Timer(&owner.loop()), relay_(owner) {}

RelayConnection::~RelayConnection() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
}

void RelayConnection::start() {
  const ConnectTarget t = relay_.target(this);
  const SocketAddress& addr = t.address;
  peer_ = t.name.empty() ? addr.to_string() : t.name + "[" + addr.ip_text() + "]";
  command_timeout_ms_ = t.command_timeout_ms;
  fd_ = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    close(std::string("socket: ") + std::strerror(errno), true);
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = ::connect(fd_, addr.get(), addr.length);
  if (rc != 0 && errno != EINPROGRESS) {
    close(std::string("connect: ") + std::strerror(errno), true);
    return;
  }
  state_ = State::kConnecting;
  relay_.loop().add(fd_, EPOLLOUT, this);
  interest_ = EPOLLOUT;
  arm_at(relay_.loop().now_ms() + t.connect_timeout_ms);
}

void RelayConnection::arm_command_timeout() { arm_at(relay_.loop().now_ms() + command_timeout_ms_); }

void RelayConnection::on_io(uint32_t events) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      close(std::string("connect to ") + peer_ + ": " + std::strerror(err), true);
      return;
    }
    on_connected();
    return;
  }
  if (state_ == State::kHandshake) {
    handshake();
    return;
  }
  if (events & EPOLLOUT) {
    if (!write_out()) return;
    if (state_ == State::kBody && out_.empty()) fill_body();
    if (state_ == State::kClosed) return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_input();
}

void RelayConnection::on_connected() {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* a = local.ss_family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                                                 : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
    if (::inet_ntop(local.ss_family, a, text, sizeof text) != nullptr) local_ip_ = text;
  }
  state_ = State::kGreeting;
  arm_command_timeout();
  update_interest();
}

void RelayConnection::read_input() {
  char buf[16384];
  // With read-ahead OpenSSL may hold whole records the socket no longer signals: drain those too.
  for (int round = 0; (round < 16 || (ssl_ != nullptr && SSL_has_pending(ssl_))) && state_ != State::kClosed; ++round) {
    ssize_t n;
    if (ssl_ != nullptr) {
      int rc = SSL_read(ssl_, buf, sizeof buf);
      if (rc <= 0) {
        int err = SSL_get_error(ssl_, rc);
        if (err == SSL_ERROR_WANT_READ) break;
        if (err == SSL_ERROR_WANT_WRITE) {
          tls_wants_write_ = true;
          break;
        }
        close("next hop closed the TLS connection", !greeted_ok_);
        return;
      }
      n = rc;
    } else {
      n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        close(n == 0 ? "next hop closed the connection" : std::string("read: ") + std::strerror(errno), !greeted_ok_);
        return;
      }
    }
    std::string_view v(buf, static_cast<size_t>(n));
    while (!v.empty() && state_ != State::kClosed) {
      auto res = parser_.feed(v);
      if (res == smtp::ReplyParser::Result::kError) {
        close("protocol error from next hop: " + parser_.error(), !greeted_ok_);
        return;
      }
      if (res == smtp::ReplyParser::Result::kNeedMore) break;
      State before = state_;
      on_reply(parser_.take());
      if (before == State::kStartTls && state_ == State::kHandshake) return;  // the rest is discarded
    }
  }
  update_interest();
}

void RelayConnection::send(std::string_view text) {
  out_.append(text);
  write_out();
}

bool RelayConnection::write_out() {
  size_t off = 0;
  while (off < out_.size()) {
    ssize_t n;
    if (ssl_ != nullptr) {
      int rc = SSL_write(ssl_, out_.data() + off, static_cast<int>(out_.size() - off));
      if (rc <= 0) {
        int err = SSL_get_error(ssl_, rc);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) break;
        out_.clear();
        close("TLS write to next hop failed", false);
        return false;
      }
      n = rc;
    } else {
      n = ::send(fd_, out_.data() + off, out_.size() - off, MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        out_.clear();
        close(std::string("write to next hop: ") + std::strerror(errno), false);
        return false;
      }
    }
    off += static_cast<size_t>(n);
  }
  out_.erase(0, off);
  update_interest();
  return true;
}

void RelayConnection::update_interest() {
  if (state_ == State::kClosed) return;
  uint32_t ev = EPOLLIN;
  if (!out_.empty() || tls_wants_write_) ev |= EPOLLOUT;
  if (ev != interest_) {
    relay_.loop().modify(fd_, ev, this);
    interest_ = ev;
  }
}

void RelayConnection::send_ehlo() {
  send("EHLO " + relay_.helo_name() + "\r\n");
}

void RelayConnection::handshake() {
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    tls_wants_write_ = false;
    smtp::TlsState t = tls::describe(ssl_);
    log::debug("relay.tls").kv("worker", relay_.worker_index()).kv("peer", peer_).kv("tls", t.version).kv("cipher", t.cipher);
    if (std::string refused = relay_.accept_tls(this, ssl_); !refused.empty()) {
      close(refused, true);
      return;
    }
    state_ = State::kEhloTls;
    arm_command_timeout();
    send_ehlo();
    return;
  }
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    tls_wants_write_ = err == SSL_ERROR_WANT_WRITE;
    update_interest();
    return;
  }
  std::string why = tls::last_error();
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) why = std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
  close("TLS handshake with next hop failed: " + why, true);
}

void RelayConnection::on_reply(const smtp::Reply& r) {
  arm_command_timeout();
  const TlsNeed need = relay_.tls_need(this);
  switch (state_) {
    case State::kGreeting:
      if (r.code != 220) {
        close("next hop greeting: " + r.text(), true);
        return;
      }
      state_ = State::kEhlo;
      send_ehlo();
      return;
    case State::kEhlo:
    case State::kEhloTls: {
      if (r.code != 250) {
        close("next hop refused EHLO: " + r.text(), true);
        return;
      }
      ehlo_ = r;
      pipelining_ = smtp::ehlo_has(r, "PIPELINING");
      if (state_ == State::kEhlo && need != TlsNeed::kNever && smtp::ehlo_has(r, "STARTTLS")) {
        state_ = State::kStartTls;
        send("STARTTLS\r\n");
        return;
      }
      if (state_ == State::kEhlo && need == TlsNeed::kRequired) {
        close(peer_ + " does not offer STARTTLS, which is required (starttls-not-supported)", true);
        return;
      }
      ready_for_mail();
      return;
    }
    case State::kStartTls: {
      if (r.code != 220) {
        if (need == TlsNeed::kRequired) {
          close(peer_ + " refused STARTTLS: " + r.text(), true);
          return;
        }
        ready_for_mail();  // opportunistic: carry on in plaintext
        return;
      }
      parser_ = smtp::ReplyParser();  // anything already received is discarded, never read as TLS replies
      std::string why;
      ssl_ = relay_.new_ssl(this, &why);
      if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
        close("TLS setup failed: " + (why.empty() ? tls::last_error() : why), true);
        return;
      }
      SSL_set_connect_state(ssl_);
      state_ = State::kHandshake;
      handshake();
      return;
    }
    case State::kTransaction: on_transaction_reply(r); return;
    case State::kDot: finish_transaction(&r); return;
    case State::kRset:
      if (!r.positive()) {
        close("next hop refused RSET: " + r.text(), false);
        return;
      }
      state_ = State::kIdle;
      offer_work();
      return;
    case State::kQuit: close("quit", false); return;
    default:
      // An unsolicited reply (e.g. "421 idle timeout") ends the connection.
      close("unexpected reply from next hop: " + r.text(), false);
      return;
  }
}

void RelayConnection::ready_for_mail() {
  greeted_ok_ = true;
  relay_.hop_ok(this);
  state_ = State::kIdle;
  offer_work();
}

bool RelayConnection::offer_work() {
  if (state_ != State::kIdle) return false;
  Job job;
  if (!relay_.next_job(this, &job)) {
    if (relay_.stopping()) {
      quit_if_idle();
    } else {
      arm_at(relay_.loop().now_ms() + kIdleQuitMs);
    }
    return false;
  }
  begin_transaction(std::move(job));
  return true;
}

void RelayConnection::quit_if_idle() {
  if (state_ != State::kIdle) return;
  state_ = State::kQuit;
  arm_command_timeout();
  send("QUIT\r\n");
}

void RelayConnection::begin_transaction(Job job) {
  spool::SpoolEntry* e = job.entry;
  msg_ = e;
  job_ = std::move(job);
  tx_started_ms_ = relay_.loop().now_ms();
  rcpts_.clear();
  rcpt_commands_.clear();
  accepted_.clear();
  settled_.clear();
  expects_.clear();
  mail_ok_ = false;
  data_sent_ = false;
  transient_reason_.clear();
  body_offset_ = 0;
  body_done_ = false;
  at_line_start_ = true;
  last_char_ = '\n';
  rcpt_sent_ = 0;
  rcpt_replies_ = 0;
  state_ = State::kTransaction;
  arm_command_timeout();

  const auto& env = e->envelope;
  const bool dsn = smtp::ehlo_has(ehlo_, "DSN");
  for (uint32_t i = 0; i < e->recipients.size(); ++i) {
    if (e->recipients[i] != spool::RecipientState::kPending) continue;
    if (!job_.rcpts.empty() && std::find(job_.rcpts.begin(), job_.rcpts.end(), i) == job_.rcpts.end()) continue;
    rcpts_.push_back(i);
    const auto& r = env.recipients(static_cast<int>(i));
    std::string cmd = "RCPT TO:<" + r.address() + ">";
    if (dsn && r.notify() != 0) cmd += " NOTIFY=" + notify_text(r.notify());
    if (dsn && !r.orcpt().empty()) cmd += " ORCPT=" + r.orcpt();
    rcpt_commands_.push_back(cmd + "\r\n");
  }
  // RFC 8689 4.2.1: a REQUIRETLS message (with a non-null return-path; bounces are exempt) leaves only
  // over TLS 1.2+ to a verified peer that advertises REQUIRETLS (in the EHLO after STARTTLS; ehlo_
  // is that one whenever ssl_ is set).
  if (env.requiretls() && !env.mail_from().empty()) {
    std::string why;
    if (ssl_ == nullptr) why = "no TLS session with " + peer_;
    else if (SSL_version(ssl_) < TLS1_2_VERSION) why = "TLS version below 1.2 (" + std::string(SSL_get_version(ssl_)) + ") with " + peer_;
    else if (std::string r = relay_.requiretls_refusal(this, ssl_); !r.empty()) why = r;
    else if (!smtp::ehlo_has(ehlo_, "REQUIRETLS")) why = peer_ + " does not advertise REQUIRETLS";
    if (!why.empty()) {
      log::info("relay.requiretls_refused").kv("worker", relay_.worker_index()).kv("qid", env.queue_id()).kv("peer", peer_).kv("reason", why);
      Job taken = job_;
      taken.rcpts = rcpts_;
      if (relay_.requiretls_refused(this, taken, why)) {
        msg_ = nullptr;
        job_ = Job{};
        rcpts_.clear();
        state_ = State::kIdle;
        offer_work();
        return;
      }
      for (uint32_t i : rcpts_) {
        mxedge::spool::v1::RecipientResult rr;
        rr.set_index(i);
        rr.set_outcome(mxedge::spool::v1::RECIPIENT_OUTCOME_FAILED);
        rr.set_reply("550 5.7.30 REQUIRETLS support required: " + why);
        settled_.push_back(rr);
      }
      finish_transaction(nullptr);
      return;
    }
  }
  if (env.smtputf8() && !smtp::ehlo_has(ehlo_, "SMTPUTF8")) {
    // RFC 6531 3.4: an SMTPUTF8 message cannot be passed to a server that does not offer it.
    for (uint32_t i : rcpts_) {
      mxedge::spool::v1::RecipientResult rr;
      rr.set_index(i);
      rr.set_outcome(mxedge::spool::v1::RECIPIENT_OUTCOME_FAILED);
      rr.set_reply("553 5.6.7 " + peer_ + " does not support SMTPUTF8");
      settled_.push_back(rr);
    }
    finish_transaction(nullptr);
    return;
  }
  std::string mail = "MAIL FROM:<" + env.mail_from() + ">";
  if (smtp::ehlo_has(ehlo_, "SIZE")) mail += " SIZE=" + std::to_string(env.size());
  if (smtp::ehlo_has(ehlo_, "8BITMIME")) {
    if (env.body_type() == mxedge::spool::v1::BODY_TYPE_8BITMIME) mail += " BODY=8BITMIME";
    if (env.body_type() == mxedge::spool::v1::BODY_TYPE_7BIT) mail += " BODY=7BIT";
  }
  if (env.smtputf8()) mail += " SMTPUTF8";
  if (dsn && env.ret() == mxedge::spool::v1::DSN_RET_FULL) mail += " RET=FULL";
  if (dsn && env.ret() == mxedge::spool::v1::DSN_RET_HDRS) mail += " RET=HDRS";
  if (dsn && !env.envid().empty()) mail += " ENVID=" + env.envid();
  if (env.requiretls() && ssl_ != nullptr && smtp::ehlo_has(ehlo_, "REQUIRETLS")) mail += " REQUIRETLS";
  mail += "\r\n";

  if (pipelining_) {
    std::string batch = mail;
    for (const auto& c : rcpt_commands_) batch += c;
    batch += "DATA\r\n";
    expects_.push_back(Expect::kMail);
    for (size_t i = 0; i < rcpt_commands_.size(); ++i) expects_.push_back(Expect::kRcpt);
    expects_.push_back(Expect::kData);
    rcpt_sent_ = rcpt_commands_.size();
    data_sent_ = true;
    send(batch);
  } else {
    expects_.push_back(Expect::kMail);
    send(mail);
  }
}

void RelayConnection::send_next_lockstep() {
  if (!mail_ok_) {
    finish_transaction(nullptr);
  } else if (rcpt_sent_ < rcpt_commands_.size()) {
    expects_.push_back(Expect::kRcpt);
    send(rcpt_commands_[rcpt_sent_++]);
  } else if (!data_sent_ && !accepted_.empty()) {
    data_sent_ = true;
    expects_.push_back(Expect::kData);
    send("DATA\r\n");
  } else {
    finish_transaction(nullptr);
  }
}

void RelayConnection::on_transaction_reply(const smtp::Reply& r) {
  if (expects_.empty()) {
    close("unexpected reply from next hop: " + r.text(), false);
    return;
  }
  Expect ex = expects_.front();
  expects_.pop_front();
  auto fail = [&](uint32_t idx) {
    mxedge::spool::v1::RecipientResult rr;
    rr.set_index(idx);
    rr.set_outcome(mxedge::spool::v1::RECIPIENT_OUTCOME_FAILED);
    rr.set_reply(r.text());
    settled_.push_back(rr);
  };
  switch (ex) {
    case Expect::kMail:
      mail_ok_ = r.positive();
      if (!mail_ok_) {
        if (r.permanent()) {
          for (uint32_t i : rcpts_) fail(i);
        } else {
          transient_reason_ = "MAIL FROM: " + r.text();
        }
      }
      if (!pipelining_) send_next_lockstep();
      return;
    case Expect::kRcpt: {
      uint32_t idx = rcpts_[rcpt_replies_++];
      if (mail_ok_) {
        if (r.positive()) accepted_.push_back(idx);
        else if (r.permanent()) fail(idx);
        else transient_reason_ = "RCPT TO: " + r.text();
      }
      if (!pipelining_) send_next_lockstep();
      return;
    }
    case Expect::kData:
      if (r.code == 354) {
        if (accepted_.empty()) {
          // The next hop should have refused DATA; send an empty message it must reject.
          state_ = State::kDot;
          send(".\r\n");
          return;
        }
        state_ = State::kBody;
        fill_body();
        return;
      }
      if (mail_ok_ && !accepted_.empty()) {
        if (r.permanent()) {
          for (uint32_t i : accepted_) fail(i);
        } else {
          transient_reason_ = "DATA: " + r.text();
        }
        accepted_.clear();
      }
      finish_transaction(nullptr);
      return;
  }
}

void RelayConnection::fill_body() {
  std::string chunk;
  // Keep at most kBodyWindow bytes queued; EPOLLOUT resumes when the socket drains.
  while (state_ == State::kBody) {
    while (out_.size() < kBodyWindow && !body_done_) {
      if (!relay_.spool().read_body(*msg_, body_offset_, kBodyChunk, chunk)) {
        close("cannot read the message from the spool", false);
        return;
      }
      if (chunk.empty()) {
        body_done_ = true;
        break;
      }
      body_offset_ += chunk.size();
      // Dot-stuffing (RFC 5321 4.5.2) on canonical CRLF content.
      size_t start = 0;
      for (size_t i = 0; i < chunk.size(); ++i) {
        if (at_line_start_ && chunk[i] == '.') {
          out_.append(chunk, start, i - start);
          out_ += '.';
          start = i;
        }
        at_line_start_ = chunk[i] == '\n';
      }
      out_.append(chunk, start, chunk.size() - start);
      last_char_ = chunk.back();
    }
    if (body_done_) {
      if (last_char_ != '\n') out_ += "\r\n";
      out_ += ".\r\n";
      state_ = State::kDot;
    }
    arm_command_timeout();
    if (!write_out()) return;
    if (!out_.empty()) return;
  }
}

void RelayConnection::finish_transaction(const smtp::Reply* dot) {
  bool clean = false;
  std::string reply_text;
  if (dot != nullptr) {
    reply_text = dot->text();
    for (uint32_t i : accepted_) {
      if (dot->transient()) continue;
      mxedge::spool::v1::RecipientResult rr;
      rr.set_index(i);
      rr.set_outcome(dot->positive() ? mxedge::spool::v1::RECIPIENT_OUTCOME_DELIVERED : mxedge::spool::v1::RECIPIENT_OUTCOME_FAILED);
      rr.set_reply(reply_text);
      settled_.push_back(rr);
    }
    if (dot->transient()) transient_reason_ = "end of data: " + reply_text;
    clean = dot->positive();
  }
  spool::SpoolEntry* e = msg_;
  msg_ = nullptr;
  Job job = std::move(job_);
  job_ = Job{};
  job.rcpts = rcpts_;
  relay_.report(this, job, settled_, peer_, ssl_, reply_text);
  size_t pending_after = 0;
  for (uint32_t i : rcpts_) {
    bool settled = std::any_of(settled_.begin(), settled_.end(), [i](const auto& rr) { return rr.index() == i; });
    if (!settled) ++pending_after;
  }
  if (pending_after > 0) {
    relay_.spool().settle(e, settled_);
    job.rcpts.erase(std::remove_if(job.rcpts.begin(), job.rcpts.end(),
                                   [e](uint32_t i) { return e->recipients[i] != spool::RecipientState::kPending; }),
                    job.rcpts.end());
    relay_.defer(this, job, transient_reason_.empty() ? "not accepted by " + peer_ : transient_reason_);
  } else {
    relay_.spool().settle(e, settled_);  // destroys the entry
  }
  settled_.clear();
  if (state_ == State::kClosed) return;
  if (clean) {
    state_ = State::kIdle;
    offer_work();
  } else {
    expects_.clear();
    state_ = State::kRset;
    arm_command_timeout();
    send("RSET\r\n");
  }
}

void RelayConnection::on_timer() {
  switch (state_) {
    case State::kIdle: quit_if_idle(); return;
    case State::kConnecting: close("timeout connecting to " + peer_, true); return;
    case State::kClosed: return;
    default: close("timeout waiting for the next hop", !greeted_ok_); return;
  }
}

void RelayConnection::abort(const std::string& reason) { close(reason, false); }

void RelayConnection::close(const std::string& reason, bool hop_failure) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  cancel();
  if (fd_ >= 0) relay_.loop().remove(fd_);
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (msg_ != nullptr) {
    msg_ = nullptr;
    Job job = std::move(job_);
    job_ = Job{};
    relay_.defer(this, job, reason);
  }
  if (hop_failure) relay_.hop_failed(this, reason);
  log::debug("relay.connection_closed").kv("worker", relay_.worker_index()).kv("peer", peer_).kv("reason", reason);
  relay_.connection_closed(this);
}

}  // namespace mxedge::relay
