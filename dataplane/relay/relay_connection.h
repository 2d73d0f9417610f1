// One SMTP client connection from a worker to the next hop or to an outbound destination's MX host
// (its ConnectionOwner decides which): connect, EHLO, STARTTLS as the owner demands (and judged by
// it after the handshake), then transactions (MAIL, RCPT..., DATA; pipelined when the server offers
// PIPELINING) for as long as the owner has jobs, and QUIT after a short idle time.
//
// STANDARDS: RFC 5321 (client side), RFC 2920 PIPELINING, RFC 3207 STARTTLS, RFC 1870 SIZE,
// RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 3461 DSN parameters passed through, RFC 8689 REQUIRETLS
// (sent when the message has it; such a message goes only where the owner and RFC 8689 4.2.1 allow).
// SECURITY: the body is sent in canonical form — CRLF line endings as stored, every line starting with
// "." stuffed — so the next hop cannot see a different end of data than we did. Bytes the next hop sends
// after its 220 to STARTTLS, before the handshake, are discarded (response injection).
#pragma once

#include <openssl/ssl.h>

#include <deque>
#include <string>
#include <vector>

#include "dataplane/relay/connection_owner.h"
#include "dataplane/smtp/smtp_reply.h"
#include "dataplane/spool/spool.h"
#include "dataplane/worker/event_loop.h"

namespace mxedge::relay {

class RelayConnection final : public worker::IoHandler, public worker::Timer {
 public:
  explicit RelayConnection(ConnectionOwner& owner);
  ~RelayConnection() override;

  void start();
  void on_io(uint32_t events) override;
  // An idle connection takes a message now; returns false when busy.
  bool offer_work();
  void quit_if_idle();
  void abort(const std::string& reason);
  // The local address of the connection once connected (the sending MTA IP of a TLS-RPT report).
  const std::string& local_ip() const { return local_ip_; }

 protected:
  void on_timer() override;

 private:
  enum class State { kConnecting, kGreeting, kEhlo, kStartTls, kHandshake, kEhloTls, kIdle, kTransaction, kBody, kDot, kRset, kQuit, kClosed };
  enum class Expect { kMail, kRcpt, kData };

  void on_connected();
  void read_input();
  void on_reply(const smtp::Reply& r);
  void send(std::string_view text);
  bool write_out();
  void send_ehlo();
  void ready_for_mail();
  void begin_transaction(Job job);
  void on_transaction_reply(const smtp::Reply& r);
  void send_next_lockstep();
  void fill_body();
  void finish_transaction(const smtp::Reply* dot_reply);
  void handshake();
  void update_interest();
  void close(const std::string& reason, bool hop_failure);
  void arm_command_timeout();

  ConnectionOwner& relay_;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  State state_ = State::kConnecting;
  smtp::ReplyParser parser_;
  smtp::Reply ehlo_;
  std::string out_;
  std::string in_;
  uint32_t interest_ = 0;
  bool tls_wants_write_ = false;
  bool pipelining_ = false;
  bool greeted_ok_ = false;
  std::string peer_;
  std::string local_ip_;

  // Current transaction.
  spool::SpoolEntry* msg_ = nullptr;
  Job job_;
  std::vector<uint32_t> rcpts_;                 // recipient indexes sent in this transaction
  std::vector<std::string> rcpt_commands_;
  size_t rcpt_sent_ = 0;
  size_t rcpt_replies_ = 0;
  std::vector<uint32_t> accepted_;
  std::vector<mxedge::spool::v1::RecipientResult> settled_;
  std::deque<Expect> expects_;
  bool mail_ok_ = false;
  bool data_sent_ = false;
  std::string transient_reason_;
  uint64_t body_offset_ = 0;
  bool body_done_ = false;
  bool at_line_start_ = true;
  char last_char_ = '\n';
  int64_t tx_started_ms_ = 0;
  int64_t command_timeout_ms_ = 300000;
};

}  // namespace mxedge::relay
