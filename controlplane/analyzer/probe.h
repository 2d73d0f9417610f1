// The connectivity analyzer's live probe of one MX address, in the manner of posttls-finger: connect,
// greeting, EHLO, STARTTLS, the TLS handshake, the peer's chain, then EHLO again over TLS and QUIT.
// No mail is sent. Blocking sockets with timeouts: the analyzer runs on a thread of its own.
//
// The TLS session is set up by tls::OutboundTls (dataplane/tls/client_verify.h) for `host`: kDane
// with the host's usable TLSA records when it has them, so the DANE match is judged exactly as
// delivery judges it (OpenSSL's DANE verifier, DANE-EE without name checks, DANE-TA names). The
// WebPKI match (what MTA-STS enforce requires, RFC 8461 §4.2) is checked on the same chain against
// the OutboundTls context's trust store with the MX host name, so one session answers both.
//
// STANDARDS: RFC 5321 (SMTP), RFC 3207 (STARTTLS: nothing may follow the 220 before the handshake),
// RFC 7672 (DANE for SMTP), RFC 8461 §4.2, RFC 8460 §4.3 (result types).
// SECURITY: the peer is untrusted: replies are parsed by smtp::ReplyParser (bounded lines), every
// read has a timeout, and data the server sends after its STARTTLS reply is discarded, not read as
// part of the TLS session's SMTP dialogue.
#pragma once

#include <chrono>
#include <string>

#include "dataplane/tls/client_verify.h"
#include "mxedge/mgmt/v1/check.pb.h"
#include "policy/delivery_policy.h"

namespace mxedge::analyzer {

struct ProbeOptions {
  std::string ehlo_name = "localhost";
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds command_timeout{30000};  // per read and write
};

// Probes `address` (an IP literal) port host.port as `host` (kDane: TLSA set and DANE names; any
// other requirement: no DANE check). `tls` must have been created with max_cached_sessions 0, so
// every probe gets a full handshake and the peer's chain.
mgmt::v1::Probe probe_address(const policy::HostPolicy& host, const std::string& address, tls::OutboundTls& tls,
                              const ProbeOptions& options);

}  // namespace mxedge::analyzer
