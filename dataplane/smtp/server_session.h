// The inbound SMTP server's protocol engine for one connection: bytes in, replies out, and requests to
// the worker that owns the connection (start TLS, commit a message to the spool, close). It does no I/O
// and never blocks, so the same code is driven by the epoll worker, the unit tests and the fuzzers.
//
// STANDARDS: RFC 5321 (commands, replies, 4.5.3 limits), RFC 2920 PIPELINING, RFC 1870 SIZE,
// RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 2034/3463 enhanced status codes, RFC 3030 CHUNKING/BDAT,
// RFC 3461 DSN (parameters carried through), RFC 3207 STARTTLS, RFC 8314 implicit TLS, RFC 8689 REQUIRETLS
// (offered under TLS only; a "TLS-Required: No" header field is noted in the envelope),
// RFC 3848/6531 Received: protocol names. Every reply is listed in docs/smtp-replies.md.
// SECURITY: input is hostile. Buffers are bounded by the configured line lengths; message content
// streams to the spool. Bytes pipelined after STARTTLS are discarded (CVE-2011-0411 class); a message
// is acknowledged only after the worker reports it durable; relaying is refused for any recipient
// outside the accepted domains, including the percent hack, '!' paths, quoted local parts with '@',
// address literals and source routes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/smtp/body_reader.h"
#include "dataplane/smtp/smtp_command.h"

namespace mxedge::smtp {

// Immutable per-listener settings; shared by all sessions of a config snapshot.
struct SessionPolicy {
  std::string hostname;
  std::string listener_name;
  std::vector<std::string> accepted_domains;  // lower case
  bool offer_starttls = false;
  bool implicit_tls = false;
  bool require_tls = false;
  // Outbound intake: recipients in any domain (the listener admits only the organisation's servers).
  bool outbound = false;
  // MAIL needs a verified client certificate (530 5.7.0 otherwise).
  bool require_client_certificate = false;
  uint32_t command_line_length = 2048;
  uint32_t text_line_length = 1000;
  uint32_t recipients_per_message = 1000;
  uint64_t message_size = 50ULL << 20;
  uint32_t errors_per_session = 20;
};

struct TlsState {
  bool active = false;
  std::string version;  // "TLSv1.3"
  std::string cipher;
  int bits = 0;
  bool client_verified = false;  // the client presented a certificate that verified
  std::string client_subject;
};

struct Recipient {
  std::string address;
  uint32_t notify = 0;
  std::string orcpt;
};

// The envelope of a message being received or committed.
struct Envelope {
  std::string queue_id;
  std::string mail_from;  // empty for <>
  std::vector<Recipient> recipients;
  BodyParam body = BodyParam::kUnspecified;
  bool smtputf8 = false;
  RetParam ret = RetParam::kUnspecified;
  std::string envid;
  std::string helo;
  std::string client_address;
  std::string listener;
  TlsState tls;
  uint64_t size = 0;
  bool outbound = false;  // received on an outbound intake listener
  bool tlsrpt_exempt = false;    // a TLS-RPT report the gateway generated (never from a session)
  bool requiretls = false;       // RFC 8689 MAIL FROM REQUIRETLS
  bool tls_required_no = false;  // RFC 8689 "TLS-Required: No" header field
};

// What the session needs from the worker that owns it.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  virtual std::string new_queue_id() = 0;
  // A sink for the body of message qid; never null (a sink that failed to open reports it at commit).
  virtual std::unique_ptr<BodySink> open_body(const std::string& queue_id) = 0;
  // False when the spool's file system is below its free-space floor.
  virtual bool spool_has_room() = 0;
  // Current time as an RFC 5322 date, for the Received: header.
  virtual std::string rfc5322_date() = 0;
};

enum class CommitStatus { kOk, kNoSpace, kError };

class ServerSession {
 public:
  enum class Want { kInput, kStartTls, kCommit, kClose };

  ServerSession(std::shared_ptr<const SessionPolicy> policy, SessionHost* host, std::string client_address);

  // Connection start: the 220 greeting (after the TLS handshake on an implicit-TLS listener).
  void greet();
  // Refuse the connection with a final reply and close (busy, too many connections, pre-greeting
  // talk, shutdown): the reply must be a complete "421 ..." or "554 ..." line without CRLF.
  void refuse(std::string_view reply);

  void on_input(std::string_view data);
  Want want() const { return want_; }

  // Pending replies; the worker writes them and clears the buffer.
  std::string& output() { return out_; }

  // After Want::kStartTls: the handshake finished (the session restarts per RFC 3207) or failed.
  void tls_started(TlsState tls);
  void tls_handshake_done_implicit(TlsState tls);  // implicit TLS: record state, then greet()

  // After Want::kCommit: the worker takes the message, makes it durable, and reports.
  struct Message {
    Envelope envelope;
    std::unique_ptr<BodySink> body;
  };
  Message take_message();
  void commit_done(CommitStatus status);

  // Timers owned by the worker.
  bool in_data_phase() const { return phase_ == Phase::kData || phase_ == Phase::kBdat; }
  uint64_t data_bytes() const { return data_bytes_; }
  void timeout();
  void data_rate_too_low();
  // Graceful shutdown: idle sessions are told 421 now; one receiving a message finishes it first.
  void shutdown();

  // For the session log line.
  struct Stats {
    uint32_t messages_accepted = 0;
    uint32_t messages_refused = 0;
    uint32_t recipients_accepted = 0;
    uint32_t recipients_refused = 0;
    uint32_t errors = 0;
    uint64_t bytes_in = 0;
  };
  const Stats& stats() const { return stats_; }
  const std::string& helo() const { return helo_; }
  const TlsState& tls() const { return tls_; }
  const std::string& close_reason() const { return close_reason_; }

 private:
  enum class Phase { kCommand, kData, kBdat, kDiscardLine };

  size_t process(std::string_view in);
  size_t handle_line(std::string_view in);  // returns bytes consumed, 0 if no complete line
  void dispatch(std::string_view line);
  void reply(std::string_view text);  // a complete reply line (or several, separated by CRLF) without final CRLF
  void close_with(std::string_view text, std::string_view reason);
  void reset_transaction();

  void cmd_ehlo(std::string_view args, bool extended);
  void cmd_mail(std::string_view args);
  void cmd_rcpt(std::string_view args);
  void cmd_data(std::string_view args);
  void cmd_bdat(std::string_view args);
  void cmd_starttls(std::string_view args);

  bool begin_message();           // opens the sink and writes the Received: header
  void finish_message(const ContentFlags& flags);
  std::string relay_refusal(const Mailbox& m) const;  // empty when the recipient is acceptable

  std::shared_ptr<const SessionPolicy> policy_;
  SessionHost* host_;
  std::string client_address_;
  std::string in_;   // unprocessed input (at most one partial command line, or data held during commit)
  std::string out_;
  Want want_ = Want::kInput;
  Phase phase_ = Phase::kCommand;
  bool shutting_down_ = false;

  std::string helo_;
  bool esmtp_ = false;
  TlsState tls_;

  bool in_transaction_ = false;
  bool used_bdat_ = false;
  Envelope env_;
  std::unique_ptr<BodySink> sink_;
  std::unique_ptr<HeaderScanner> header_scanner_;  // between the readers and sink_
  std::unique_ptr<DataReader> data_reader_;
  std::unique_ptr<ChunkReader> chunk_reader_;
  uint64_t bdat_remaining_ = 0;
  bool bdat_last_ = false;
  bool bdat_refused_ = false;  // BDAT out of sequence: the chunk is read and thrown away
  uint64_t data_bytes_ = 0;

  Message pending_;
  std::string committing_qid_;
  Stats stats_;
  std::string close_reason_;
};

}  // namespace mxedge::smtp
