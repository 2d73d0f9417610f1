// smtp_client_session.h - one SMTP client session of mxedge-loadgen.
//
// DESCRIPTION
//   A SmtpClientSession is a state machine driven by its worker's epoll loop:
//   non-blocking connect, greeting, EHLO, STARTTLS and a non-blocking TLS
//   handshake (or implicit TLS from the first byte), then either
//   --messages-per-session mail transactions or, in --idle mode, a quiet wait
//   until the worker ends the hold, and finally QUIT and 221.
//
//   Every reply code is checked against the one the step expects; the first
//   unexpected reply, timeout, close or TLS failure is recorded as the session's
//   error and the session ends: with QUIT when the server can still read a
//   command, by closing the connection when it cannot (after 421, or once the
//   server is reading message content).
//
//   The socket is registered once, edge-triggered, for input and output. On
//   every event the session writes what it can and reads until the socket (or
//   TLS) would block, so no readiness change is ever missed and the epoll
//   registration never has to be modified.
//
//   WorkerContext is the session's view of the worker that owns it: the shared
//   configuration and message, the worker's counters, scratch buffer and epoll
//   descriptor. Sessions are only ever touched by their worker's thread.
//
// STANDARDS
//   RFC 5321 (SMTP), RFC 2920 (PIPELINING: MAIL, RCPTs and DATA sent in one
//   write, replies checked in order), RFC 3207 (STARTTLS; the EHLO after TLS),
//   RFC 8314 (implicit TLS), RFC 1870 (SIZE parameter when advertised).
//
// SECURITY
//   The server is untrusted. Replies go through the product's bounded reply
//   parser (dataplane/smtp/smtp_reply.h, mxedge::smtp::ReplyParser, the one the
//   gateway's relay uses toward its next hop); reply text is sanitised before
//   it is stored in reports;
//   plaintext received after "220" to STARTTLS ends the session (it would
//   otherwise be processed as if it had been protected by TLS); capabilities
//   learnt before TLS are discarded and relearnt from the EHLO after it.
//   Per-session memory is a few hundred bytes plus OpenSSL's state; message
//   bodies are shared and read-only.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include "dataplane/smtp/smtp_reply.h"
#include "loadgen_config.h"
#include "message_template.h"
#include "run_stats.h"

namespace mxedge::loadgen {

// Nanoseconds of CLOCK_MONOTONIC.
std::int64_t monotonic_ns();

struct WorkerContext {
  WorkerContext(const LoadgenConfig& config_in, SSL_CTX* ssl_ctx_in, const MessageTemplate& message_in,
                RunStats& stats_in, LiveCounters& live_in)
      : config(config_in), ssl_ctx(ssl_ctx_in), message(message_in), stats(stats_in), live(live_in) {}

  const LoadgenConfig& config;
  SSL_CTX* ssl_ctx;  // null when --tls none
  const MessageTemplate& message;
  RunStats& stats;
  LiveCounters& live;
  int epoll_fd = -1;
  unsigned worker_index = 0;
  std::uint64_t run_id = 0;
  char* read_buffer = nullptr;
  std::size_t read_buffer_size = 0;
  // Sessions that reached the idle state and have not left it.
  std::size_t idle_now = 0;
  // Set when the run is stopping: a session that completes its handshake then
  // goes straight to QUIT instead of idling.
  bool skip_idle = false;
  std::uint64_t message_sequence = 0;
  std::uint64_t next_source_address = 0;
  // The run's start on monotonic_ns(), for the --timeline slots (set when the run starts).
  std::int64_t run_start_ns = 0;

  // The Date header value for "now", formatted at most once a second.
  std::string_view date();
  std::time_t date_second = -1;
  std::string date_text;
};

class SmtpClientSession {
 public:
  explicit SmtpClientSession(WorkerContext& context);
  ~SmtpClientSession();
  SmtpClientSession(const SmtpClientSession&) = delete;
  SmtpClientSession& operator=(const SmtpClientSession&) = delete;

  // Opens the connection. The session may be done() on return (connect error).
  void start();
  // The socket is ready for something (epoll reported it).
  void on_io();
  // Periodic check of the per-step timeout.
  void on_tick(std::int64_t now);
  // Idle mode: the hold is over; send QUIT. No-op unless idle().
  void end_idle();
  // Drops the connection without further protocol, counted as aborted.
  void abort();

  [[nodiscard]] bool done() const { return phase_ == Phase::kDone; }
  [[nodiscard]] bool idle() const { return phase_ == Phase::kIdle; }

  // Position in the worker's list of active sessions.
  std::size_t slot = 0;

 private:
  enum class Phase : std::uint8_t {
    kConnect,
    kTlsHandshake,
    kGreeting,
    kEhlo,
    kStarttls,
    kMail,
    kRcpt,
    kData,
    kDataEnd,
    kIdle,
    kQuit,
    kDone,
  };
  static std::string_view phase_name(Phase phase);

  enum class ReadResult { kData, kWouldBlock, kFailed };

  bool finish_connect();
  void begin_tls();
  bool continue_handshake();
  void pump();
  bool flush();
  ReadResult read_some(std::size_t& length);
  void process_input(const char* data, std::size_t length);
  void handle_reply(const smtp::Reply& reply, bool more_input);
  bool reply_failure(const smtp::Reply& reply);
  void after_ehlo();
  void start_message();
  void send_rcpt();
  void send_content();
  void send_quit();
  void queue(std::string_view text);
  [[nodiscard]] bool output_pending() const { return out_offset_ < out_.size() || tail_offset_ < tail_.size(); }

  void record_failure(ErrorClass error_class, std::string_view kind, std::string_view detail);
  void fail_and_close(ErrorClass error_class, std::string_view kind, std::string_view detail);
  void finish();
  void leave_idle();
  void close_connection(bool clean);
  void arm_deadline();

  WorkerContext& ctx_;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  Phase phase_ = Phase::kConnect;
  bool tls_active_ = false;
  bool pipelining_ = false;
  bool size_advertised_ = false;
  bool failed_ = false;
  bool in_message_ = false;  // MAIL sent, final reply to the content not yet seen
  bool data_mode_ = false;   // the server is reading message content
  bool counted_idle_ = false;
  std::uint32_t rcpt_index_ = 0;    // next RCPT to send (lock-step)
  std::uint32_t rcpt_replies_ = 0;  // RCPT replies seen in this transaction
  std::uint64_t messages_done_ = 0;

  std::int64_t connect_started_ = 0;
  std::int64_t starttls_sent_ = 0;
  std::int64_t data_ended_ = 0;
  std::int64_t deadline_ = 0;  // 0: no step timeout (idle)

  // Output: an owned head (commands, message headers) followed by a borrowed
  // tail (the shared message body), so bodies are never copied per session.
  std::string out_;
  std::size_t out_offset_ = 0;
  std::string_view tail_;
  std::size_t tail_offset_ = 0;

  smtp::ReplyParser parser_;
};

}  // namespace mxedge::loadgen
