// Delivery status notifications; see dsn.h.
#include "dataplane/delivery/dsn.h"

#include <algorithm>
#include <ctime>

#include "dataplane/smtp/server_session.h"
#include "policy/log.h"

namespace mxedge::delivery {
namespace {

std::string rfc5322_date(int64_t us) {
  const std::time_t t = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

// One header-safe line: no CR/LF or other controls, at most `max` octets.
std::string one_line(std::string_view s, size_t max = 900) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) break;
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  return out;
}

constexpr uint32_t kNotifySuccess = 1, kNotifyFailure = 2, kNotifyDelay = 4, kNotifyNever = 8;

}  // namespace

std::string domain_of(const std::string& address) {
  const size_t at = address.rfind('@');
  std::string d = at == std::string::npos ? std::string() : address.substr(at + 1);
  for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!d.empty() && d.back() == '.') d.pop_back();
  return d;
}

std::string enhanced_status(std::string_view text, const std::string& fallback) {
  for (size_t i = 0; i + 5 <= text.size(); ++i) {
    if ((text[i] == '2' || text[i] == '4' || text[i] == '5') && text[i + 1] == '.' && (i == 0 || text[i - 1] == ' ')) {
      size_t j = i + 2;
      size_t d1 = 0, d2 = 0;
      while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j])) && d1 < 3) ++j, ++d1;
      if (d1 == 0 || j >= text.size() || text[j] != '.') continue;
      ++j;
      while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j])) && d2 < 3) ++j, ++d2;
      if (d2 == 0 || (j < text.size() && text[j] != ' ' && text[j] != ':' && text[j] != ']' && text[j] != ')')) continue;
      return std::string(text.substr(i, j - i));
    }
  }
  return fallback;
}

std::vector<DsnRecipient> dsn_recipients(const mxedge::spool::v1::Envelope& env, DsnKind kind, std::vector<DsnRecipient> candidates) {
  (void)kNotifySuccess;
  if (env.mail_from().empty()) return {};  // never a notice about a notice
  std::vector<DsnRecipient> out;
  for (auto& r : candidates) {
    if (static_cast<int>(r.index) >= env.recipients_size()) continue;
    const uint32_t notify = env.recipients(static_cast<int>(r.index)).notify();
    bool wanted;
    if (notify & kNotifyNever) wanted = false;
    else if (notify == 0) wanted = kind == DsnKind::kFailure;
    else wanted = (notify & (kind == DsnKind::kFailure ? kNotifyFailure : kNotifyDelay)) != 0;
    if (wanted) out.push_back(std::move(r));
  }
  return out;
}

std::string build_dsn(const mxedge::spool::v1::Envelope& env, DsnKind kind, const std::vector<DsnRecipient>& rcpts, const DsnText& text,
                      const std::string& original, bool headers_only) {
  const bool failure = kind == DsnKind::kFailure;
  const std::string boundary = "mxedge-dsn-" + env.queue_id() + "-" + std::to_string(text.now_us);
  std::string m;
  auto line = [&m](std::string_view s) {
    m.append(s);
    m.append("\r\n");
  };
  line("From: Mail Delivery System <MAILER-DAEMON@" + text.reporting_mta + ">");
  line("To: <" + one_line(env.mail_from(), 300) + ">");
  line(std::string("Subject: ") + (failure ? "Undelivered Mail Returned to Sender" : "Delayed Mail (still being retried)"));
  line("Date: " + rfc5322_date(text.now_us));
  line("Message-ID: <" + env.queue_id() + "." + std::to_string(text.now_us) + ".dsn@" + text.message_id_domain + ">");
  line("Auto-Submitted: auto-replied");
  line("MIME-Version: 1.0");
  line("Content-Type: multipart/report; report-type=delivery-status; boundary=\"" + boundary + "\"");
  line("");
  line("This is a MIME-encapsulated message.");
  line("");
  line("--" + boundary);
  line("Content-Type: text/plain; charset=us-ascii");
  line("Content-Description: Notification");
  line("");
  line("This is the mail system at host " + text.reporting_mta + ".");
  line("");
  if (failure) {
    line("Your message could not be delivered to one or more recipients. It is attached below.");
  } else {
    line("Your message could not be delivered yet to one or more recipients. It is still queued and");
    line("delivery will be retried until " + rfc5322_date(text.retry_until_us) + "; you do not need to resend it.");
  }
  line("");
  for (const auto& r : rcpts) {
    line("<" + one_line(env.recipients(static_cast<int>(r.index)).address(), 300) + ">: " + one_line(r.diagnostic));
  }
  line("");
  line("--" + boundary);
  line("Content-Type: message/delivery-status");
  line("Content-Description: Delivery report");
  line("");
  line("Reporting-MTA: dns; " + text.reporting_mta);
  line("X-Mxedge-Queue-ID: " + env.queue_id());
  if (!env.envid().empty()) line("Original-Envelope-Id: " + one_line(env.envid(), 100));
  line("Arrival-Date: " + rfc5322_date(env.received_at_us()));
  for (const auto& r : rcpts) {
    const auto& rcpt = env.recipients(static_cast<int>(r.index));
    line("");
    line("Final-Recipient: rfc822; " + one_line(rcpt.address(), 300));
    if (!rcpt.orcpt().empty()) line("Original-Recipient: " + one_line(rcpt.orcpt(), 500));
    line(std::string("Action: ") + (failure ? "failed" : "delayed"));
    line("Status: " + one_line(r.status, 16));
    if (!r.remote_mta.empty()) line("Remote-MTA: dns; " + one_line(r.remote_mta, 255));
    line("Diagnostic-Code: " + one_line(r.diagnostic));
    if (!failure) line("Will-Retry-Until: " + rfc5322_date(text.retry_until_us));
  }
  line("");
  line("--" + boundary);
  line(headers_only ? "Content-Type: text/rfc822-headers" : "Content-Type: message/rfc822");
  line(headers_only ? "Content-Description: Undelivered Message Headers" : "Content-Description: Undelivered Message");
  line("");
  m += original;
  if (!original.empty() && !original.ends_with("\r\n")) m += "\r\n";
  line("");
  line("--" + boundary + "--");
  return m;
}

std::string returned_content(spool::Spool& spool, const spool::SpoolEntry& entry, uint64_t full_limit, bool* headers_only) {
  // RFC 8689 5: a notice about a REQUIRETLS message returns its header only, as with RET=HDRS (the
  // notice may travel where the message was not allowed to).
  const bool hdrs = entry.envelope.ret() == mxedge::spool::v1::DSN_RET_HDRS || entry.envelope.size() > full_limit ||
                    entry.envelope.requiretls();
  std::string out, chunk;
  uint64_t off = 0;
  while (off <= full_limit) {
    if (!spool.read_body(entry, off, 64 << 10, chunk) || chunk.empty()) break;
    off += chunk.size();
    out += chunk;
    if (hdrs) {
      const size_t end = out.find("\r\n\r\n");
      if (end != std::string::npos) {
        out.resize(end + 2);
        break;
      }
    }
  }
  if (out.size() > full_limit) out.resize(full_limit);
  *headers_only = hdrs;
  return out;
}

std::string send_dsn(spool::Spool& spool, const spool::SpoolEntry& entry, DsnKind kind, std::vector<DsnRecipient> rcpts,
                     const std::string& hostname, const std::vector<std::string>& accepted_domains, bool outbound_enabled,
                     int64_t retry_until_us) {
  const auto& env = entry.envelope;
  rcpts = dsn_recipients(env, kind, std::move(rcpts));
  if (rcpts.empty()) {
    if (env.mail_from().empty() && kind == DsnKind::kFailure)
      log::info("dsn.suppressed").kv("qid", env.queue_id()).kv("reason", "the message came from <> (no bounce of a bounce)");
    return {};
  }
  const std::string sender_domain = domain_of(env.mail_from());
  const bool outbound = std::find(accepted_domains.begin(), accepted_domains.end(), sender_domain) == accepted_domains.end();
  if (outbound && !outbound_enabled) {
    log::warning("dsn.not_sent").kv("qid", env.queue_id())
        .kv("reason", "the sender is outside accepted_domains and outbound delivery is disabled");
    return {};
  }
  bool headers_only = false;
  const std::string original = returned_content(spool, entry, 1 << 20, &headers_only);
  DsnText text;
  text.reporting_mta = hostname;
  text.now_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  text.retry_until_us = retry_until_us;
  text.message_id_domain = hostname;
  const std::string body = build_dsn(env, kind, rcpts, text, original, headers_only);

  smtp::ServerSession::Message m;
  m.envelope.queue_id = spool.new_queue_id();
  m.envelope.mail_from = "";
  m.envelope.recipients.push_back(smtp::Recipient{env.mail_from(), 0, ""});
  m.envelope.smtputf8 = env.smtputf8();
  m.envelope.body = env.body_type() == mxedge::spool::v1::BODY_TYPE_8BITMIME ? smtp::BodyParam::k8BitMime : smtp::BodyParam::kUnspecified;
  m.envelope.helo = hostname;
  m.envelope.listener = "dsn";
  m.envelope.size = body.size();
  m.envelope.outbound = outbound;
  m.body = spool.open_body(m.envelope.queue_id);
  m.body->append(body);
  const std::string qid = m.envelope.queue_id;
  const std::string original_qid = env.queue_id();
  const size_t n = rcpts.size();
  spool.stage(std::move(m), [qid, original_qid, n, kind, outbound](smtp::CommitStatus status) {
    log::info(status == smtp::CommitStatus::kOk ? "dsn.queued" : "dsn.failed")
        .kv("qid", qid)
        .kv("about", original_qid)
        .kv("kind", kind == DsnKind::kFailure ? "failure" : "delay")
        .kv("rcpts", static_cast<uint64_t>(n))
        .kv("route", outbound ? "outbound" : "next_hop");
  });
  return qid;
}

}  // namespace mxedge::delivery
