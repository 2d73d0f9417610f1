// Fuzz target: a whole inbound SMTP session fed hostile bytes in arbitrary pieces, with STARTTLS and
// commits completed as the worker would. Checks the engine's invariants, not just absence of crashes.
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <string>

#include "dataplane/smtp/server_session.h"

namespace {

class NullSink : public mxedge::smtp::BodySink {
 public:
  void append(std::string_view d) override { size += d.size(); }
  size_t size = 0;
};

class Host : public mxedge::smtp::SessionHost {
 public:
  std::string new_queue_id() override { return "Q" + std::to_string(n++); }
  std::unique_ptr<mxedge::smtp::BodySink> open_body(const std::string&) override { return std::make_unique<NullSink>(); }
  bool spool_has_room() override { return true; }
  std::string rfc5322_date() override { return "Thu, 1 Jan 2026 00:00:00 +0000"; }
  int n = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxedge::smtp;
  if (size < 1) return 0;
  static auto policy = [] {
    auto p = std::make_shared<SessionPolicy>();
    p->hostname = "mx.fuzz.test";
    p->accepted_domains = {"fuzz.test"};
    p->offer_starttls = true;
    p->message_size = 4096;
    p->recipients_per_message = 5;
    p->command_line_length = 512;
    p->errors_per_session = 50;
    return p;
  }();
  Host host;
  ServerSession s(policy, &host, "192.0.2.1");
  s.greet();
  size_t step = 1 + data[0] % 64;  // the first byte picks the piece size
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t pos = 0;
  int commits = 0;
  while (pos < in.size()) {
    std::string_view piece = in.substr(pos, step);
    pos += piece.size();
    s.on_input(piece);
    for (int guard = 0; guard < 1000; ++guard) {
      auto w = s.want();
      if (w == ServerSession::Want::kCommit) {
        auto m = s.take_message();
        if (m.envelope.recipients.empty()) std::abort();  // never a message without recipients
        s.commit_done((commits++ % 3 == 2) ? CommitStatus::kNoSpace : CommitStatus::kOk);
      } else if (w == ServerSession::Want::kStartTls) {
        s.tls_started(TlsState{true, "TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, false, ""});
      } else {
        break;
      }
    }
    // Replies always end in CRLF.
    const std::string& out = s.output();
    if (!out.empty() && (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0)) std::abort();
    s.output().clear();
    if (s.want() == ServerSession::Want::kClose) break;
  }
  return 0;
}
