// Inbound SMTP protocol engine; see server_session.h. Reply texts are catalogued in
// docs/smtp-replies.md and must stay in step with it.
#include "dataplane/smtp/server_session.h"

#include <algorithm>

namespace mxedge::smtp {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

// Text from the peer that ends up in a header we write: printable ASCII only.
std::string header_safe(std::string_view s, size_t max) {
  std::string out;
  out.reserve(std::min(s.size(), max));
  for (char c : s.substr(0, max)) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back((u >= 0x21 && u < 0x7f) ? c : '?');
  }
  return out;
}

}  // namespace

ServerSession::ServerSession(std::shared_ptr<const SessionPolicy> policy, SessionHost* host,
                             std::string client_address)
    : policy_(std::move(policy)), host_(host), client_address_(std::move(client_address)) {}

void ServerSession::greet() {
  out_ += "220 " + policy_->hostname + " ESMTP mxedge\r\n";
}

void ServerSession::refuse(std::string_view reply_line) {
  out_.append(reply_line);
  out_ += "\r\n";
  want_ = Want::kClose;
  close_reason_ = "refused";
}

void ServerSession::tls_handshake_done_implicit(TlsState tls) { tls_ = std::move(tls); }

void ServerSession::tls_started(TlsState tls) {
  // RFC 3207 4.2: forget everything learned before TLS; the client must EHLO again.
  tls_ = std::move(tls);
  helo_.clear();
  esmtp_ = false;
  reset_transaction();
  in_.clear();
  phase_ = Phase::kCommand;
  want_ = Want::kInput;
}

void ServerSession::on_input(std::string_view data) {
  stats_.bytes_in += data.size();
  if (want_ == Want::kClose || want_ == Want::kStartTls) return;
  if (want_ == Want::kCommit) {
    in_.append(data);  // held until the message is durable; the worker stops reading meanwhile
    return;
  }
  if (in_.empty()) {
    size_t used = process(data);
    if (want_ != Want::kClose && want_ != Want::kStartTls) in_.assign(data.substr(used));
  } else {
    in_.append(data);
    size_t used = process(in_);
    in_.erase(0, used);
  }
}

size_t ServerSession::process(std::string_view in) {
  size_t pos = 0;
  while (want_ == Want::kInput && pos < in.size()) {
    std::string_view rest = in.substr(pos);
    switch (phase_) {
      case Phase::kCommand: {
        size_t n = handle_line(rest);
        if (n == 0) return pos;
        pos += n;
        break;
      }
      case Phase::kDiscardLine: {
        size_t nl = rest.find('\n');
        if (nl == std::string_view::npos) return in.size();
        pos += nl + 1;
        phase_ = Phase::kCommand;
        break;
      }
      case Phase::kData: {
        size_t n = data_reader_->feed(rest);
        pos += n;
        data_bytes_ += n;
        if (data_reader_->done()) finish_message(data_reader_->flags());
        break;
      }
      case Phase::kBdat: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(bdat_remaining_, rest.size()));
        if (!bdat_refused_) chunk_reader_->feed(rest.substr(0, take));
        pos += take;
        data_bytes_ += take;
        bdat_remaining_ -= take;
        if (bdat_remaining_ == 0) {
          if (bdat_refused_) {
            phase_ = Phase::kCommand;
            bdat_refused_ = false;
          } else if (bdat_last_) {
            chunk_reader_->finish();
            finish_message(chunk_reader_->flags());
          } else {
            phase_ = Phase::kCommand;
            reply("250 2.0.0 Ok: " + std::to_string(chunk_reader_->flags().size) + " octets received");
          }
        }
        break;
      }
    }
  }
  // After STARTTLS or a final reply, whatever else the client pipelined is discarded.
  if (want_ == Want::kStartTls || want_ == Want::kClose) return in.size();
  return pos;
}

size_t ServerSession::handle_line(std::string_view in) {
  size_t nl = in.find('\n');
  if (nl == std::string_view::npos) {
    if (in.size() >= policy_->command_line_length) {
      reply("500 5.5.2 Error: command line too long");
      phase_ = Phase::kDiscardLine;
      return in.size();
    }
    return 0;
  }
  std::string_view line = in.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() + 2 > policy_->command_line_length) {
    reply("500 5.5.2 Error: command line too long");
  } else {
    dispatch(line);
  }
  return nl + 1;
}

void ServerSession::reply(std::string_view text) {
  out_.append(text);
  out_ += "\r\n";
  if (!text.empty() && (text[0] == '4' || text[0] == '5')) {
    ++stats_.errors;
    if (stats_.errors >= policy_->errors_per_session && want_ != Want::kClose) {
      close_with("421 4.7.0 " + policy_->hostname + " Error: too many errors", "too many errors");
    }
  }
}

void ServerSession::close_with(std::string_view text, std::string_view reason) {
  out_.append(text);
  out_ += "\r\n";
  want_ = Want::kClose;
  close_reason_.assign(reason);
}

void ServerSession::reset_transaction() {
  in_transaction_ = false;
  used_bdat_ = false;
  env_ = Envelope{};
  data_reader_.reset();
  chunk_reader_.reset();
  header_scanner_.reset();
  sink_.reset();
  bdat_remaining_ = 0;
  bdat_last_ = false;
  bdat_refused_ = false;
  data_bytes_ = 0;
}

void ServerSession::dispatch(std::string_view line) {
  Command cmd = parse_command(line);
  switch (cmd.verb) {
    case Verb::kEhlo: cmd_ehlo(cmd.args, true); break;
    case Verb::kHelo: cmd_ehlo(cmd.args, false); break;
    case Verb::kMail: cmd_mail(cmd.args); break;
    case Verb::kRcpt: cmd_rcpt(cmd.args); break;
    case Verb::kData: cmd_data(cmd.args); break;
    case Verb::kBdat: cmd_bdat(cmd.args); break;
    case Verb::kStarttls: cmd_starttls(cmd.args); break;
    case Verb::kRset:
      reset_transaction();
      reply("250 2.0.0 Ok");
      break;
    case Verb::kNoop: reply("250 2.0.0 Ok"); break;
    case Verb::kHelp: reply("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP STARTTLS"); break;
    case Verb::kQuit:
      close_with("221 2.0.0 Bye", "quit");
      break;
    case Verb::kVrfy:
    case Verb::kExpn: reply("502 5.5.1 Error: command not implemented"); break;
    case Verb::kUnknown: reply("502 5.5.2 Error: command not recognized"); break;
  }
}

void ServerSession::cmd_ehlo(std::string_view args, bool extended) {
  if (args.empty()) {
    reply(extended ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname");
    return;
  }
  reset_transaction();
  helo_ = header_safe(args, 255);
  esmtp_ = extended;
  if (!extended) {
    reply("250 " + policy_->hostname);
    return;
  }
  std::vector<std::string> lines = {policy_->hostname, "PIPELINING", "SIZE " + std::to_string(policy_->message_size),
                                    "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"};
  if (policy_->offer_starttls && !tls_.active) lines.emplace_back("STARTTLS");
  // RFC 8689 2: REQUIRETLS only in a TLS session (after STARTTLS or on an implicit-TLS listener).
  if (tls_.active) lines.emplace_back("REQUIRETLS");
  std::string text;
  for (size_t i = 0; i < lines.size(); ++i) {
    text += (i + 1 < lines.size()) ? "250-" : "250 ";
    text += lines[i];
    if (i + 1 < lines.size()) text += "\r\n";
  }
  reply(text);
}

void ServerSession::cmd_mail(std::string_view args) {
  if (helo_.empty()) return reply("503 5.5.1 Error: send HELO/EHLO first");
  if (policy_->require_tls && !tls_.active) return reply("530 5.7.0 Must issue a STARTTLS command first");
  if (policy_->require_client_certificate && !tls_.client_verified)
    return reply(tls_.active ? "530 5.7.0 A client certificate from a trusted CA is required"
                             : "530 5.7.0 Must issue a STARTTLS command first (with a client certificate)");
  if (in_transaction_) return reply("503 5.5.1 Error: nested MAIL command");
  MailParseResult r = parse_mail_from(args);
  if (r.path_error != PathError::kNone) return reply("501 5.1.7 Bad sender address syntax");
  if (r.param_error != ParamError::kNone) return reply("555 5.5.4 Unsupported option: " + header_safe(r.bad_param, 64));
  const MailFromArgs& a = r.args;
  if (!esmtp_ && (a.size || a.body != BodyParam::kUnspecified || a.smtputf8 || a.ret != RetParam::kUnspecified || !a.envid.empty() ||
                 a.requiretls))
    return reply("555 5.5.4 Unsupported option: ESMTP parameters need EHLO");
  // RFC 8689 2: REQUIRETLS is offered, and may be used, only in a TLS-protected session; the sender
  // asked for protection the session it used does not have (RFC 3463 / RFC 5248 5.7.10:
  // encryption needed).
  if (a.requiretls && !tls_.active) return reply("530 5.7.10 REQUIRETLS needs a TLS session: issue STARTTLS first");
  if (a.size && *a.size > policy_->message_size) return reply("552 5.3.4 Message size exceeds fixed limit");
  if (a.sender.non_ascii && !a.smtputf8) return reply("553 5.6.7 Non-ASCII address requires SMTPUTF8");
  if (!host_->spool_has_room()) return reply("452 4.3.1 Insufficient system storage");
  in_transaction_ = true;
  env_ = Envelope{};
  env_.mail_from = a.sender.address();
  env_.body = a.body;
  env_.smtputf8 = a.smtputf8;
  env_.ret = a.ret;
  env_.envid = a.envid;
  env_.requiretls = a.requiretls;
  reply("250 2.1.0 Ok");
}

std::string ServerSession::relay_refusal(const Mailbox& m) const {
  const std::string shown = "<" + header_safe(m.address(), 300) + ">";
  auto denied = [&](std::string_view why) { return "550 5.7.1 " + shown + ": Relay access denied (" + std::string(why) + ")"; };
  if (m.source_route) return denied("source route");
  if (m.address_literal) return denied("address literal");
  if (m.local_part.find('@') != std::string::npos) return denied("quoted local part with @");
  if (m.local_part.find('%') != std::string::npos) return denied("percent hack");
  if (m.local_part.find('!') != std::string::npos) return denied("bang path");
  const std::string domain = lower(m.domain);
  if (policy_->outbound) return {};
  if (std::find(policy_->accepted_domains.begin(), policy_->accepted_domains.end(), domain) == policy_->accepted_domains.end())
    return "554 5.7.1 " + shown + ": Relay access denied";
  return {};
}

void ServerSession::cmd_rcpt(std::string_view args) {
  if (!in_transaction_) return reply("503 5.5.1 Error: need MAIL command");
  if (used_bdat_) return reply("503 5.5.1 Error: RCPT not allowed during BDAT");
  RcptParseResult r = parse_rcpt_to(args);
  if (r.path_error != PathError::kNone) {
    ++stats_.recipients_refused;
    return reply("501 5.1.3 Bad recipient address syntax");
  }
  if (r.param_error != ParamError::kNone) {
    ++stats_.recipients_refused;
    return reply("555 5.5.4 Unsupported option: " + header_safe(r.bad_param, 64));
  }
  Mailbox& m = r.args.recipient;
  if (m.non_ascii && !env_.smtputf8) {
    ++stats_.recipients_refused;
    return reply("553 5.6.7 Non-ASCII address requires SMTPUTF8");
  }
  if (env_.recipients.size() >= policy_->recipients_per_message) {
    ++stats_.recipients_refused;
    return reply("452 4.5.3 Error: too many recipients");
  }
  std::string address;
  if (m.postmaster && m.domain.empty()) {
    // RFC 5321 4.5.1: <Postmaster> without a domain must be accepted.
    address = "postmaster@" + (policy_->accepted_domains.empty() ? policy_->hostname : policy_->accepted_domains.front());
  } else {
    std::string refusal = relay_refusal(m);
    if (!refusal.empty()) {
      ++stats_.recipients_refused;
      return reply(refusal);
    }
    address = m.address();
  }
  env_.recipients.push_back(Recipient{std::move(address), r.args.notify, std::move(r.args.orcpt)});
  ++stats_.recipients_accepted;
  reply("250 2.1.5 Ok");
}

bool ServerSession::begin_message() {
  env_.queue_id = host_->new_queue_id();
  env_.helo = helo_;
  env_.client_address = client_address_;
  env_.listener = policy_->listener_name;
  env_.tls = tls_;
  sink_ = host_->open_body(env_.queue_id);

  // RFC 5321 4.4 trace information; protocol names from RFC 3848 and RFC 6531.
  std::string proto = env_.smtputf8 ? "UTF8SMTP" : (esmtp_ ? "ESMTP" : "SMTP");
  if (tls_.active) proto += "S";
  // The date follows the last clause after ";" on the same line: a line that began with ";" would
  // end the header section for every reader downstream.
  std::string h = "Received: from " + helo_ + " ([" + client_address_ + "])\r\n\tby " + policy_->hostname +
                  " (mxedge) with " + proto + " id " + env_.queue_id;
  if (tls_.active) {
    h += "\r\n\t(using " + tls_.version + " with cipher " + tls_.cipher + " (" + std::to_string(tls_.bits) + "/" +
         std::to_string(tls_.bits) + " bits))";
  }
  if (env_.recipients.size() == 1) h += "\r\n\tfor <" + header_safe(env_.recipients.front().address, 300) + ">";
  h += "; " + host_->rfc5322_date() + "\r\n";
  sink_->append(h);
  env_.size = h.size();
  // The client's content passes the TLS-Required header scanner on its way to the spool.
  header_scanner_ = std::make_unique<HeaderScanner>(sink_.get());
  return true;
}

void ServerSession::cmd_data(std::string_view args) {
  if (!args.empty()) return reply("501 5.5.4 Syntax: DATA");
  if (!in_transaction_) return reply("503 5.5.1 Error: need MAIL command");
  if (used_bdat_) return reply("503 5.5.1 Error: DATA not allowed after BDAT");
  if (env_.recipients.empty()) return reply("554 5.5.1 Error: no valid recipients");
  begin_message();
  data_reader_ = std::make_unique<DataReader>(policy_->message_size, policy_->text_line_length, header_scanner_.get());
  phase_ = Phase::kData;
  data_bytes_ = 0;
  reply("354 End data with <CR><LF>.<CR><LF>");
}

void ServerSession::cmd_bdat(std::string_view args) {
  auto parsed = parse_bdat(args);
  if (!parsed) {
    // The chunk's length is unknown, so nothing after this point can be parsed safely.
    return close_with("501 5.5.4 Syntax: BDAT chunk-size [LAST]", "bad BDAT");
  }
  bdat_remaining_ = parsed->size;
  bdat_last_ = parsed->last;
  std::string refusal;
  if (!in_transaction_) refusal = "503 5.5.1 Error: need MAIL command";
  else if (env_.recipients.empty()) refusal = "554 5.5.1 Error: no valid recipients";
  if (!refusal.empty()) {
    // RFC 3030 4: the chunk is read and discarded; the reply follows it. Reply now: order is kept.
    reply(refusal);
    if (want_ == Want::kClose) return;
    if (bdat_remaining_ > 0) {
      bdat_refused_ = true;
      phase_ = Phase::kBdat;
    }
    return;
  }
  if (!used_bdat_) {
    used_bdat_ = true;
    begin_message();
    chunk_reader_ = std::make_unique<ChunkReader>(policy_->message_size, policy_->text_line_length, header_scanner_.get());
  }
  phase_ = Phase::kBdat;
  if (bdat_remaining_ == 0) {
    phase_ = Phase::kCommand;
    if (bdat_last_) {
      chunk_reader_->finish();
      finish_message(chunk_reader_->flags());
    } else {
      reply("250 2.0.0 Ok: " + std::to_string(chunk_reader_->flags().size) + " octets received");
    }
  }
}

void ServerSession::finish_message(const ContentFlags& flags) {
  phase_ = Phase::kCommand;
  if (!flags.acceptable()) {
    ++stats_.messages_refused;
    std::string text;
    if (flags.bare_cr_or_lf) text = "554 5.6.0 Message refused: bare CR or LF in message data";
    else if (flags.too_big) text = "552 5.3.4 Message size exceeds fixed limit";
    else text = "554 5.6.0 Message refused: text line too long";
    reset_transaction();
    reply(text);
    if (shutting_down_ && want_ != Want::kClose)
      close_with("421 4.3.2 " + policy_->hostname + " Service shutting down", "shutdown");
    return;
  }
  env_.size += flags.size;
  header_scanner_->finish();
  // RFC 8689 4.1: with REQUIRETLS on MAIL FROM the header field is ignored (it stays in the message).
  env_.tls_required_no = header_scanner_->tls_required_no() && !env_.requiretls;
  header_scanner_.reset();
  committing_qid_ = env_.queue_id;
  pending_.envelope = std::move(env_);
  pending_.body = std::move(sink_);
  want_ = Want::kCommit;
}

ServerSession::Message ServerSession::take_message() {
  pending_.envelope.outbound = policy_->outbound;
  return std::move(pending_);
}

void ServerSession::commit_done(CommitStatus status) {
  const std::string qid = std::move(committing_qid_);
  pending_ = Message{};
  want_ = Want::kInput;
  reset_transaction();
  switch (status) {
    case CommitStatus::kOk:
      ++stats_.messages_accepted;
      reply("250 2.0.0 Ok: queued as " + qid);
      break;
    case CommitStatus::kNoSpace:
      ++stats_.messages_refused;
      reply("452 4.3.1 Insufficient system storage");
      break;
    case CommitStatus::kError:
      ++stats_.messages_refused;
      reply("451 4.3.0 Error: queue file write error");
      break;
  }
  if (shutting_down_ && want_ != Want::kClose) {
    close_with("421 4.3.2 " + policy_->hostname + " Service shutting down", "shutdown");
    return;
  }
  if (!in_.empty() && want_ == Want::kInput) {
    std::string held = std::move(in_);
    in_.clear();
    size_t used = process(held);
    if (want_ != Want::kClose && want_ != Want::kStartTls) in_.assign(std::string_view(held).substr(used));
  }
}

void ServerSession::cmd_starttls(std::string_view args) {
  if (!policy_->offer_starttls) return reply("502 5.5.1 Error: command not implemented");
  if (tls_.active) return reply("554 5.5.1 Error: TLS already active");
  if (!args.empty()) return reply("501 5.5.4 Syntax: STARTTLS");
  out_ += "220 2.0.0 Ready to start TLS\r\n";
  want_ = Want::kStartTls;
}

void ServerSession::timeout() {
  if (want_ == Want::kClose) return;
  close_with("421 4.4.2 " + policy_->hostname + " Error: timeout exceeded", "timeout");
}

void ServerSession::data_rate_too_low() {
  if (want_ == Want::kClose) return;
  close_with("421 4.4.2 " + policy_->hostname + " Error: data rate too low", "data rate too low");
}

void ServerSession::shutdown() {
  shutting_down_ = true;
  if (want_ == Want::kClose || want_ == Want::kCommit) return;  // commit_done says goodbye
  if (in_data_phase()) return;                                   // finish_message says goodbye
  close_with("421 4.3.2 " + policy_->hostname + " Service shutting down", "shutdown");
}

}  // namespace mxedge::smtp
