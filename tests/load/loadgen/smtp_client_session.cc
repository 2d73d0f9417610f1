// smtp_client_session.cc - one SMTP client session of mxedge-loadgen.
//
// DESCRIPTION
//   Life of a session (phase_ names the reply or event being waited for):
//
//     kConnect -> [implicit TLS: kTlsHandshake] -> kGreeting -> kEhlo
//       -> [STARTTLS: kStarttls -> kTlsHandshake -> kEhlo]
//       -> per message: kMail -> kRcpt... -> kData -> kDataEnd
//       -> (or kIdle until end_idle()) -> kQuit -> kDone
//
//   With PIPELINING, MAIL, every RCPT and DATA leave in one write and the
//   replies are matched in order; a rejected MAIL or RCPT does not stop the
//   reading of the rest of the group, because the server answers every command
//   of it. Only after DATA's reply can the session tell whether the server is
//   reading content (354: the connection must be dropped, as QUIT would become
//   message text) or still reading commands (QUIT is possible).
//
//   Latencies: connect->greeting runs from the connect() call to the 220;
//   STARTTLS from sending the command to a completed handshake (for implicit
//   TLS from the connect() call to a completed handshake); data->250 from the
//   moment the final ".\r\n" was handed to the kernel (or to OpenSSL) to the
//   reply.
//
// STANDARDS
//   RFC 5321 sections 3.3, 4.1.1, 4.2, 4.3.2 (reply codes per command),
//   4.5.2 (transparency), 4.5.3.2 (timeouts). RFC 2920 section 3.1 (client
//   use of pipelining: DATA last in a group, content only after 354).
//   RFC 3207 section 4.2 (discard knowledge from before TLS; re-EHLO).
//
// SECURITY
//   See smtp_client_session.h. The reply parser bounds everything read (and
//   reply text is sanitised by reply_summary() before it reaches a report); the
//   only other per-session allocation is the owned output head, which holds
//   at most one pipelined group or one header block.
#include "smtp_client_session.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "tls_client.h"

namespace mxedge::loadgen {

namespace {

// One TLS record's worth; larger SSL_write calls would only be split anyway.
constexpr std::size_t kMaxTlsWrite = 16384;

std::string_view errno_name(int error) {
  const char* name = strerrorname_np(error);
  return name != nullptr ? std::string_view(name) : std::string_view("EUNKNOWN");
}

// Longest reply text kept in an error report.
constexpr std::size_t kMaxReplyText = 200;

// "CODE first-line-text" of an untrusted reply, printable and bounded: bytes
// outside 0x20..0x7e become '?', the text is cut at kMaxReplyText bytes.
std::string reply_summary(const smtp::Reply& reply) {
  std::string out = std::to_string(reply.code);
  if (reply.lines.empty() || reply.lines.front().empty()) return out;
  out += ' ';
  const std::string& text = reply.lines.front();
  const std::size_t length = std::min(text.size(), kMaxReplyText);
  for (std::size_t i = 0; i < length; ++i) {
    const char c = text[i];
    out.push_back(c >= 0x20 && c <= 0x7e ? c : '?');
  }
  return out;
}

}  // namespace

std::int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string_view WorkerContext::date() {
  const std::time_t now = std::time(nullptr);
  if (now != date_second) {
    date_second = now;
    date_text = rfc5322_date(now);
  }
  return date_text;
}

std::string_view SmtpClientSession::phase_name(Phase phase) {
  switch (phase) {
    case Phase::kConnect:
      return "connect";
    case Phase::kTlsHandshake:
      return "tls_handshake";
    case Phase::kGreeting:
      return "greeting";
    case Phase::kEhlo:
      return "ehlo";
    case Phase::kStarttls:
      return "starttls";
    case Phase::kMail:
      return "mail";
    case Phase::kRcpt:
      return "rcpt";
    case Phase::kData:
      return "data";
    case Phase::kDataEnd:
      return "data_end";
    case Phase::kIdle:
      return "idle";
    case Phase::kQuit:
      return "quit";
    case Phase::kDone:
      return "done";
  }
  return "unknown";
}

SmtpClientSession::SmtpClientSession(WorkerContext& context) : ctx_(context) {}

SmtpClientSession::~SmtpClientSession() { close_connection(false); }

void SmtpClientSession::arm_deadline() {
  deadline_ = monotonic_ns() + static_cast<std::int64_t>(ctx_.config.timeout_s * 1e9);
}

void SmtpClientSession::start() {
  ++ctx_.stats.sessions_started;
  LiveCounters::bump(ctx_.live.sessions_active);
  const LoadgenConfig& config = ctx_.config;
  connect_started_ = monotonic_ns();
  arm_deadline();

  fd_ = socket(config.server.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    const int error = errno;
    fail_and_close(ErrorClass::kConnect, errno_name(error), std::strerror(error));
    return;
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (!config.source_addresses.empty()) {
    const SocketAddress& source = config.source_addresses[ctx_.next_source_address++ % config.source_addresses.size()];
    // Let connect() pick the port: the 4-tuple, not the source port alone,
    // must then be unique, which is what lets many addresses multiply the
    // number of connections to one server.
    setsockopt(fd_, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd_, source.get(), source.length) != 0) {
      const int error = errno;
      fail_and_close(ErrorClass::kConnect, errno_name(error), fmt::format("bind: {}", std::strerror(error)));
      return;
    }
  }
  if (connect(fd_, config.server.get(), config.server.length) != 0 && errno != EINPROGRESS) {
    const int error = errno;
    fail_and_close(ErrorClass::kConnect, errno_name(error), std::strerror(error));
    return;
  }
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  event.data.ptr = this;
  if (epoll_ctl(ctx_.epoll_fd, EPOLL_CTL_ADD, fd_, &event) != 0) {
    const int error = errno;
    fail_and_close(ErrorClass::kConnect, errno_name(error), fmt::format("epoll_ctl: {}", std::strerror(error)));
  }
}

bool SmtpClientSession::finish_connect() {
  int error = 0;
  socklen_t length = sizeof(error);
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  if (error != 0) {
    fail_and_close(ErrorClass::kConnect, errno_name(error), std::strerror(error));
    return false;
  }
  arm_deadline();
  if (ctx_.config.tls == TlsMode::kImplicit) {
    begin_tls();
  } else {
    phase_ = Phase::kGreeting;
  }
  return phase_ != Phase::kDone;
}

void SmtpClientSession::begin_tls() {
  ssl_ = new_client_ssl(ctx_.ssl_ctx, ctx_.config, fd_);
  if (ssl_ == nullptr) {
    fail_and_close(ErrorClass::kTls, "failed", "cannot create the TLS state");
    return;
  }
  phase_ = Phase::kTlsHandshake;
  arm_deadline();
}

bool SmtpClientSession::continue_handshake() {
  ERR_clear_error();
  const int rc = SSL_connect(ssl_);
  if (rc != 1) {
    const int error = SSL_get_error(ssl_, rc);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return false;
    fail_and_close(ErrorClass::kTls, "failed", describe_tls_failure(ssl_, ctx_.config.verify));
    return false;
  }
  const std::int64_t now = monotonic_ns();
  ctx_.stats.starttls.record(now - (ctx_.config.tls == TlsMode::kImplicit ? connect_started_ : starttls_sent_));
  ++ctx_.stats.tls_handshakes;
  LiveCounters::bump(ctx_.live.handshakes);
  ctx_.stats.count(ctx_.stats.tls_versions, SSL_get_version(ssl_));
  ctx_.stats.count(ctx_.stats.tls_ciphers, SSL_get_cipher_name(ssl_));
  tls_active_ = true;
  arm_deadline();
  if (ctx_.config.tls == TlsMode::kImplicit) {
    phase_ = Phase::kGreeting;
  } else {
    // RFC 3207 4.2: forget everything learnt before TLS and ask again.
    pipelining_ = false;
    size_advertised_ = false;
    queue(fmt::format("EHLO {}\r\n", ctx_.config.ehlo));
    phase_ = Phase::kEhlo;
  }
  return true;
}

void SmtpClientSession::on_io() {
  if (phase_ == Phase::kConnect && !finish_connect()) return;
  pump();
}

void SmtpClientSession::pump() {
  while (phase_ != Phase::kDone) {
    if (phase_ == Phase::kTlsHandshake) {
      if (!continue_handshake()) return;
      continue;
    }
    if (!flush()) return;
    std::size_t length = 0;
    if (read_some(length) != ReadResult::kData) return;
    process_input(ctx_.read_buffer, length);
  }
}

void SmtpClientSession::on_tick(std::int64_t now) {
  if (phase_ == Phase::kDone || deadline_ == 0 || now < deadline_) return;
  fail_and_close(ErrorClass::kTimeout, "timeout", fmt::format("no progress for {} s", ctx_.config.timeout_s));
}

void SmtpClientSession::end_idle() {
  if (phase_ != Phase::kIdle) return;
  ++ctx_.stats.idle_held;
  leave_idle();
  send_quit();
  pump();
}

void SmtpClientSession::abort() {
  if (phase_ == Phase::kDone) return;
  // A session whose error is already recorded (it was sending QUIT) failed;
  // only one cut short while healthy counts as aborted.
  if (failed_) {
    ++ctx_.stats.sessions_failed;
  } else {
    ++ctx_.stats.sessions_aborted;
  }
  ctx_.stats.record_session_end(monotonic_ns() - ctx_.run_start_ns, false, 0);
  failed_ = true;
  in_message_ = false;
  leave_idle();
  close_connection(false);
  phase_ = Phase::kDone;
  LiveCounters::bump(ctx_.live.sessions_active, -1);
  LiveCounters::bump(ctx_.live.sessions_done);
}

void SmtpClientSession::queue(std::string_view text) {
  if (out_offset_ == out_.size()) {
    out_.clear();
    out_offset_ = 0;
  }
  out_.append(text);
}

bool SmtpClientSession::flush() {
  bool progressed = false;
  while (output_pending()) {
    const bool in_head = out_offset_ < out_.size();
    ssize_t written;
    if (tls_active_) {
      const char* data = in_head ? out_.data() + out_offset_ : tail_.data() + tail_offset_;
      const std::size_t left = in_head ? out_.size() - out_offset_ : tail_.size() - tail_offset_;
      ERR_clear_error();
      const int n = SSL_write(ssl_, data, static_cast<int>(std::min(left, kMaxTlsWrite)));
      if (n <= 0) {
        const int error = SSL_get_error(ssl_, n);
        if (error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ) break;
        fail_and_close(ErrorClass::kClosed, "write_failed", "TLS write failed");
        return false;
      }
      written = n;
    } else {
      iovec iov[2];
      int count = 0;
      if (in_head) {
        iov[count++] = {out_.data() + out_offset_, out_.size() - out_offset_};
      }
      if (tail_offset_ < tail_.size()) {
        iov[count++] = {const_cast<char*>(tail_.data() + tail_offset_), tail_.size() - tail_offset_};
      }
      msghdr message{};
      message.msg_iov = iov;
      message.msg_iovlen = static_cast<std::size_t>(count);
      written = sendmsg(fd_, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (written < 0) {
        const int error = errno;
        if (error == EAGAIN || error == EWOULDBLOCK) break;
        if (error == EINTR) continue;
        fail_and_close(ErrorClass::kClosed, errno_name(error), std::strerror(error));
        return false;
      }
    }
    auto n = static_cast<std::size_t>(written);
    if (in_head) {
      const std::size_t head = std::min(n, out_.size() - out_offset_);
      out_offset_ += head;
      n -= head;
    }
    tail_offset_ += n;
    progressed = true;
  }
  if (progressed) arm_deadline();
  if (!output_pending()) {
    if (tail_offset_ != 0) {
      tail_ = {};
      tail_offset_ = 0;
    }
    if (phase_ == Phase::kDataEnd && data_ended_ == 0) data_ended_ = monotonic_ns();
  }
  return true;
}

SmtpClientSession::ReadResult SmtpClientSession::read_some(std::size_t& length) {
  if (tls_active_) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, ctx_.read_buffer, static_cast<int>(ctx_.read_buffer_size));
    if (n > 0) {
      length = static_cast<std::size_t>(n);
      return ReadResult::kData;
    }
    const int error = SSL_get_error(ssl_, n);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      return ReadResult::kWouldBlock;
    }
    if (error == SSL_ERROR_ZERO_RETURN) {
      fail_and_close(ErrorClass::kClosed, "eof", "server closed the TLS connection");
    } else {
      std::string detail = describe_tls_failure(ssl_, false);
      fail_and_close(ErrorClass::kClosed, "tls_read_failed", detail);
    }
    return ReadResult::kFailed;
  }
  for (;;) {
    const ssize_t n = recv(fd_, ctx_.read_buffer, ctx_.read_buffer_size, 0);
    if (n > 0) {
      length = static_cast<std::size_t>(n);
      return ReadResult::kData;
    }
    if (n == 0) {
      fail_and_close(ErrorClass::kClosed, "eof", "server closed the connection");
      return ReadResult::kFailed;
    }
    const int error = errno;
    if (error == EINTR) continue;
    if (error == EAGAIN || error == EWOULDBLOCK) return ReadResult::kWouldBlock;
    fail_and_close(ErrorClass::kClosed, errno_name(error), std::strerror(error));
    return ReadResult::kFailed;
  }
}

void SmtpClientSession::process_input(const char* data, std::size_t length) {
  std::string_view rest(data, length);
  while (!rest.empty() && phase_ != Phase::kDone) {
    // feed() stops right after each complete reply (rest keeps what follows),
    // so that the bytes after "220" to STARTTLS are never read as plaintext
    // replies; after kReply nothing of a later reply is buffered in the parser.
    const auto status = parser_.feed(rest);
    if (status == smtp::ReplyParser::Result::kError) {
      fail_and_close(ErrorClass::kProtocol, "malformed_reply", parser_.error());
      return;
    }
    if (status == smtp::ReplyParser::Result::kNeedMore) return;
    const smtp::Reply reply = parser_.take();
    handle_reply(reply, !rest.empty());
    // After "220" to STARTTLS the rest of the stream belongs to TLS.
    if (phase_ == Phase::kTlsHandshake) return;
  }
}

// Records an unexpected reply. Returns true when the caller should keep
// reading the replies of a pipelined group, false when the session has moved
// on (QUIT sent or connection closed).
bool SmtpClientSession::reply_failure(const smtp::Reply& reply) {
  const bool closing = reply.code == 421 || data_mode_;
  record_failure(ErrorClass::kReply, std::to_string(reply.code), reply_summary(reply));
  if (closing || phase_ == Phase::kQuit || phase_ == Phase::kIdle) {
    finish();
    return false;
  }
  if (pipelining_ && (phase_ == Phase::kMail || phase_ == Phase::kRcpt)) return true;
  send_quit();
  return false;
}

void SmtpClientSession::handle_reply(const smtp::Reply& reply, bool more_input) {
  arm_deadline();
  switch (phase_) {
    case Phase::kGreeting:
      if (reply.code != 220) {
        reply_failure(reply);
        return;
      }
      ctx_.stats.connect_to_greeting.record(monotonic_ns() - connect_started_);
      queue(fmt::format("EHLO {}\r\n", ctx_.config.ehlo));
      phase_ = Phase::kEhlo;
      return;

    case Phase::kEhlo:
      if (reply.code != 250) {
        reply_failure(reply);
        return;
      }
      pipelining_ = ctx_.config.pipelining_allowed && smtp::ehlo_has(reply, "PIPELINING");
      size_advertised_ = smtp::ehlo_has(reply, "SIZE");
      if (ctx_.config.tls == TlsMode::kStarttls && !tls_active_) {
        if (!smtp::ehlo_has(reply, "STARTTLS")) {
          record_failure(ErrorClass::kTls, "no_starttls", "STARTTLS not advertised");
          send_quit();
          return;
        }
        queue("STARTTLS\r\n");
        starttls_sent_ = monotonic_ns();
        phase_ = Phase::kStarttls;
        return;
      }
      after_ehlo();
      return;

    case Phase::kStarttls:
      if (reply.code != 220) {
        reply_failure(reply);
        return;
      }
      if (more_input || output_pending()) {
        fail_and_close(ErrorClass::kProtocol, "plaintext_after_220", "server sent plaintext after 220 to STARTTLS");
        return;
      }
      begin_tls();
      return;

    case Phase::kMail:
      if (reply.code != 250 && !reply_failure(reply)) return;
      phase_ = Phase::kRcpt;
      rcpt_replies_ = 0;
      if (!pipelining_) send_rcpt();
      return;

    case Phase::kRcpt:
      if (reply.code != 250 && reply.code != 251 && !reply_failure(reply)) return;
      if (++rcpt_replies_ < ctx_.config.recipients.size()) {
        if (!pipelining_) send_rcpt();
        return;
      }
      phase_ = Phase::kData;
      if (!pipelining_) queue("DATA\r\n");
      return;

    case Phase::kData:
      if (failed_) {
        // A MAIL or RCPT of this pipelined group was refused, the failure is
        // recorded; now end the session the only safe way the state allows.
        if (reply.code == 354) {
          finish();
        } else {
          send_quit();
        }
        return;
      }
      if (reply.code != 354) {
        reply_failure(reply);
        return;
      }
      send_content();
      return;

    case Phase::kDataEnd:
      if (output_pending()) {
        record_failure(ErrorClass::kProtocol, "early_reply",
                       fmt::format("reply before end of data: {}", reply_summary(reply)));
        finish();
        return;
      }
      if (reply.code != 250) {
        reply_failure(reply);
        return;
      }
      ctx_.stats.data_to_250.record(monotonic_ns() - data_ended_);
      ++ctx_.stats.messages_ok;
      LiveCounters::bump(ctx_.live.messages_ok);
      in_message_ = false;
      data_mode_ = false;
      ++messages_done_;
      if (messages_done_ < ctx_.config.messages_per_session) {
        start_message();
      } else {
        send_quit();
      }
      return;

    case Phase::kIdle:
      reply_failure(reply);
      return;

    case Phase::kQuit:
      if (failed_) {
        finish();
        return;
      }
      if (reply.code != 221) {
        reply_failure(reply);
        return;
      }
      finish();
      return;

    case Phase::kConnect:
    case Phase::kTlsHandshake:
    case Phase::kDone:
      break;
  }
  fail_and_close(ErrorClass::kProtocol, "unexpected_reply",
                 fmt::format("reply while not expecting one: {}", reply_summary(reply)));
}

void SmtpClientSession::after_ehlo() {
  if (ctx_.config.idle_mode()) {
    if (ctx_.skip_idle) {
      send_quit();
      return;
    }
    phase_ = Phase::kIdle;
    deadline_ = 0;
    counted_idle_ = true;
    ++ctx_.idle_now;
    ++ctx_.stats.idle_reached;
    LiveCounters::bump(ctx_.live.idle);
    // Nothing is buffered while idle; give the memory back.
    parser_ = smtp::ReplyParser();
    std::string().swap(out_);
    out_offset_ = 0;
    return;
  }
  if (messages_done_ < ctx_.config.messages_per_session) {
    start_message();
  } else {
    send_quit();
  }
}

void SmtpClientSession::start_message() {
  const LoadgenConfig& config = ctx_.config;
  in_message_ = true;
  rcpt_index_ = 0;
  rcpt_replies_ = 0;
  data_ended_ = 0;
  if (size_advertised_) {
    queue(fmt::format("MAIL FROM:<{}> SIZE={}\r\n", config.from, ctx_.message.message_size()));
  } else {
    queue(fmt::format("MAIL FROM:<{}>\r\n", config.from));
  }
  if (pipelining_) {
    while (rcpt_index_ < config.recipients.size()) send_rcpt();
    queue("DATA\r\n");
  }
  phase_ = Phase::kMail;
}

void SmtpClientSession::send_rcpt() {
  queue("RCPT TO:<");
  queue(ctx_.config.recipients[rcpt_index_++]);
  queue(">\r\n");
}

void SmtpClientSession::send_content() {
  ctx_.message.append_headers(out_, ctx_.date(), ctx_.run_id, ctx_.worker_index, ctx_.message_sequence++);
  tail_ = ctx_.message.wire_body();
  tail_offset_ = 0;
  data_mode_ = true;
  data_ended_ = 0;
  phase_ = Phase::kDataEnd;
}

void SmtpClientSession::send_quit() {
  queue("QUIT\r\n");
  phase_ = Phase::kQuit;
  arm_deadline();
}

void SmtpClientSession::record_failure(ErrorClass error_class, std::string_view kind, std::string_view detail) {
  if (failed_) return;
  failed_ = true;
  if (in_message_) {
    ++ctx_.stats.messages_failed;
    in_message_ = false;
  }
  if (phase_ == Phase::kIdle) ++ctx_.stats.idle_dropped;
  const std::string_view phase = phase_name(phase_);
  ctx_.stats.record_error(error_class, fmt::format("{}.{}", phase, kind), fmt::format("{}: {}", phase, detail));
  LiveCounters::bump(ctx_.live.errors);
}

void SmtpClientSession::fail_and_close(ErrorClass error_class, std::string_view kind, std::string_view detail) {
  record_failure(error_class, kind, detail);
  finish();
}

void SmtpClientSession::leave_idle() {
  if (!counted_idle_) return;
  counted_idle_ = false;
  --ctx_.idle_now;
  LiveCounters::bump(ctx_.live.idle, -1);
}

void SmtpClientSession::finish() {
  if (phase_ == Phase::kDone) return;
  leave_idle();
  if (failed_) {
    ++ctx_.stats.sessions_failed;
  } else {
    ++ctx_.stats.sessions_ok;
  }
  const std::int64_t now = monotonic_ns();
  ctx_.stats.record_session_end(now - ctx_.run_start_ns, !failed_, now - connect_started_);
  close_connection(!failed_);
  phase_ = Phase::kDone;
  LiveCounters::bump(ctx_.live.sessions_active, -1);
  LiveCounters::bump(ctx_.live.sessions_done);
}

void SmtpClientSession::close_connection(bool clean) {
  if (ssl_ != nullptr) {
    // One non-blocking close_notify after a clean QUIT; nothing waits for the
    // server's, the connection is closed next anyway.
    if (clean && tls_active_) {
      ERR_clear_error();
      SSL_shutdown(ssl_);
    }
    SSL_free(ssl_);
    ssl_ = nullptr;
    ERR_clear_error();
  }
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  tail_ = {};
  tail_offset_ = 0;
}

}  // namespace mxedge::loadgen
