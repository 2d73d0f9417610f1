// One inbound SMTP connection: socket and TLS I/O around a smtp::ServerSession, its timers, and the
// hand-off of received messages to the worker's spool.
//
// SECURITY: after STARTTLS is accepted the plaintext input buffer is discarded before the handshake
// starts, so pipelined plaintext can never be read as if it came over TLS. Reads stop while a message
// is being committed (bounded memory). Input before the greeting is a protocol violation.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "dataplane/smtp/server_session.h"
#include "dataplane/worker/event_loop.h"
#include "dataplane/worker/runtime_config.h"

namespace mxedge::worker {

class Worker;

class InboundConnection final : public IoHandler, public Timer {
 public:
  InboundConnection(Worker& worker, int fd, SocketAddress peer, std::shared_ptr<const RuntimeConfig> runtime,
                    const ListenerRuntime& listener);
  ~InboundConnection() override;

  void start();
  void on_io(uint32_t events) override;
  void shutdown();
  bool closed() const { return state_ == State::kClosed; }
  void abort(std::string_view reason) { close(reason); }

 protected:
  void on_timer() override;

 private:
  enum class State { kPregreet, kImplicitHandshake, kSmtp, kStartTlsFlush, kStartTlsHandshake, kClosing, kClosed };

  void pump();
  bool flush();
  void after_step();
  void update_interest();
  void begin_handshake();
  void handshake();
  void greet();
  void close(std::string_view reason);
  void commit_done(smtp::CommitStatus status);
  void touch();
  void rearm();
  int64_t current_timeout() const;

  Worker& worker_;
  int fd_;
  SocketAddress peer_;
  std::shared_ptr<const RuntimeConfig> runtime_;
  const ListenerRuntime& listener_;
  SSL* ssl_ = nullptr;
  smtp::ServerSession session_;
  State state_ = State::kSmtp;
  uint32_t interest_ = 0;
  bool want_write_ = false;
  bool tls_wants_read_ = false;
  bool tls_wants_write_ = false;
  bool in_data_ = false;
  int64_t started_ms_ = 0;
  int64_t last_activity_ms_ = 0;
  int64_t data_started_ms_ = 0;
  int64_t rate_check_ms_ = 0;
  std::string close_reason_;
};

}  // namespace mxedge::worker
