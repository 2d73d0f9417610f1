// What an SMTP client connection (relay_connection.h) works for: the next hop (relay::Relay) or one
// outbound destination host under its delivery policy (delivery::Destination). The owner hands out
// jobs, says where to connect and what TLS must be, judges the TLS session, and takes back what could
// not be delivered; the connection speaks SMTP.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/spool/spool.h"
#include "dataplane/stats/counters.h"
#include "dataplane/worker/event_loop.h"
#include "policy/socket_address.h"

namespace mxedge::relay {

class RelayConnection;

// Some pending recipients of one spooled message (all of them when `rcpts` is empty).
struct Job {
  spool::SpoolEntry* entry = nullptr;
  std::vector<uint32_t> rcpts;
};

struct ConnectTarget {
  SocketAddress address;
  std::string name;  // host name for logs ("" for the next hop: its address is shown)
  int64_t connect_timeout_ms = 30000;
  int64_t command_timeout_ms = 300000;
};

enum class TlsNeed {
  kNever,          // do not use STARTTLS
  kOpportunistic,  // STARTTLS when offered; plaintext otherwise
  kRequired,       // STARTTLS must be offered and succeed
};

// Every callback names the connection it comes from (an owner may run several at once).
class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  virtual worker::EventLoop& loop() = 0;
  virtual spool::Spool& spool() = 0;
  virtual unsigned worker_index() const = 0;
  virtual stats::WorkerCounters& counters() = 0;
  virtual const std::string& helo_name() const = 0;
  virtual bool stopping() const = 0;

  // Where the next connection goes.
  virtual ConnectTarget target(RelayConnection* c) = 0;
  virtual TlsNeed tls_need(RelayConnection* c) const = 0;
  // After the server's 220 to STARTTLS: a client SSL* set up for this peer; null with *error.
  virtual SSL* new_ssl(RelayConnection* c, std::string* error) = 0;
  // After the handshake: empty when the session may carry mail; otherwise why not (the connection
  // then closes as a failure of this host).
  virtual std::string accept_tls(RelayConnection* c, SSL* ssl) = 0;

  // RFC 8689 (a REQUIRETLS message with a non-null return-path, on a TLS 1.2+ session): empty when
  // this connection's peer satisfies the owner's part of the requirements (a verified certificate;
  // an MX found through DNSSEC or MTA-STS), otherwise which one failed.
  virtual std::string requiretls_refusal(RelayConnection* c, SSL* ssl) = 0;
  // The connection cannot carry `job` (a REQUIRETLS message) for `reason`. True: the owner took the
  // job back (to try it on another host, or it failed it itself); false: the connection fails its
  // recipients with 5.7.30.
  virtual bool requiretls_refused(RelayConnection* c, const Job& job, const std::string& reason) = 0;

  // A job for an idle connection; false when there is none.
  virtual bool next_job(RelayConnection* c, Job* job) = 0;
  // Some of the job's recipients stay pending: retry later.
  virtual void defer(RelayConnection* c, const Job& job, const std::string& reason) = 0;
  // Results of one transaction, for logs and counters (recipients settled as delivered / failed).
  virtual void report(RelayConnection* c, const Job& job, const std::vector<mxedge::spool::v1::RecipientResult>& settled, const std::string& peer,
                      SSL* ssl, const std::string& reply) = 0;
  virtual void hop_ok(RelayConnection* c) = 0;
  virtual void hop_failed(RelayConnection* c, const std::string& reason) = 0;
  virtual void connection_closed(RelayConnection* c) = 0;
};

}  // namespace mxedge::relay
