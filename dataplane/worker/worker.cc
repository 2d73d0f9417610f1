// Worker threads: accept, sessions, group commit, relay; see worker.h.
#include "dataplane/worker/worker.h"

#include <pthread.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

#include "controlplane/tlsrpt/intake.h"
#include "dataplane/worker/inbound_connection.h"
#include "policy/log.h"
#include "policy/privileges.h"

namespace mxedge::worker {

size_t ConnectionLimits::slot(const SocketAddress& peer) {
  // FNV-1a over the IPv4 address or the IPv6 /64.
  const unsigned char* p;
  size_t n;
  if (peer.family() == AF_INET6) {
    p = reinterpret_cast<const sockaddr_in6*>(&peer.storage)->sin6_addr.s6_addr;
    n = 8;
  } else {
    p = reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in*>(&peer.storage)->sin_addr);
    n = 4;
  }
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 16777619u;
  return h & 0xffff;
}

ConnectionLimits::Verdict ConnectionLimits::acquire(const SocketAddress& peer, uint32_t per_source, uint32_t total) {
  if (total_.fetch_add(1, std::memory_order_relaxed) >= total) {
    total_.fetch_sub(1, std::memory_order_relaxed);
    return Verdict::kTooManyTotal;
  }
  auto& c = per_source_[slot(peer)];
  if (c.fetch_add(1, std::memory_order_relaxed) >= per_source) {
    c.fetch_sub(1, std::memory_order_relaxed);
    total_.fetch_sub(1, std::memory_order_relaxed);
    return Verdict::kTooManyFromSource;
  }
  return Verdict::kOk;
}

void ConnectionLimits::release(const SocketAddress& peer) {
  per_source_[slot(peer)].fetch_sub(1, std::memory_order_relaxed);
  total_.fetch_sub(1, std::memory_order_relaxed);
}

class Worker::Acceptor final : public IoHandler {
 public:
  Acceptor(Worker& w, size_t index) : w_(w), index_(index) {}
  void on_io(uint32_t) override { w_.accept_ready(index_); }

 private:
  Worker& w_;
  size_t index_;
};

Worker::Worker(unsigned index, unsigned cpu, std::vector<int> listen_fds, std::shared_ptr<const RuntimeConfig> runtime,
               std::unique_ptr<spool::Spool> spool, ConnectionLimits& limits, dataplane::PolicyStore* policies,
               dataplane::PolicyClient* policy_client)
    : index_(index),
      cpu_(cpu),
      listen_fds_(std::move(listen_fds)),
      runtime_(std::move(runtime)),
      spool_(std::move(spool)),
      limits_(limits),
      scratch_(64 << 10) {
  relay_ = std::make_unique<relay::Relay>(loop_, *spool_, index_, counters_);
  relay_->set_runtime(runtime_);
  if (runtime_->outbound.enabled && policies != nullptr) {
    outbound_ = std::make_unique<delivery::Outbound>(loop_, *spool_, index_, counters_, *policies, policy_client);
    outbound_->set_runtime(runtime_);
  }
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    acceptors_.push_back(std::make_unique<Acceptor>(*this, i));
    loop_.add(listen_fds_[i], EPOLLIN, acceptors_.back().get());
  }
  // See refuse_without_descriptors(): what it needs exists before descriptors run out.
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  accept_resume_timer_ = std::make_unique<FunctionTimer>(&loop_, [this] {
    accept_paused_ = false;
    if (spare_fd_ < 0) spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (size_t i = 0; i < listen_fds_.size(); ++i)
      if (listen_fds_[i] >= 0 && !stopping_) loop_.modify(listen_fds_[i], EPOLLIN, acceptors_[i].get());
  });
  accept_resume_timer_->cancel();
  loop_.set_end_of_turn([this] { end_of_turn(); });
}

Worker::~Worker() {
  join();
  for (int fd : listen_fds_) {
    if (fd >= 0) ::close(fd);
  }
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run() {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu_, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
    log::warning("worker.pin_failed").kv("worker", index_).kv("cpu", cpu_);
  }
  std::string name = "mxedge-w" + std::to_string(index_);
  pthread_setname_np(pthread_self(), name.c_str());
  // This thread parses what the Internet sends: from here on it cannot start programs, trace other
  // processes, call bpf() or mount (policy/privileges.h). A kernel that refuses the filter leaves
  // the worker serving, under the unit's process-wide filter only, and says so.
  if (std::string why; !privileges::restrict_thread_syscalls(&why)) {
    log::error("worker.sandbox_failed").kv("worker", index_).kv("reason", why);
  }
  // Recovered messages go to the relay now that the loop exists.
  // Recovered messages and new ones: outbound intake mail by MX under its policy, the rest to the next hop.
  spool_->set_ready_callback([this](spool::SpoolEntry* e) { route(e); });
  if (!runtime_->config.tlsrpt().inbound().mailboxes().empty()) open_tlsrpt_store();
  log::info("worker.started").kv("worker", index_).kv("cpu", cpu_).kv("listeners", static_cast<uint64_t>(listen_fds_.size()))
      .kv("spooled", static_cast<uint64_t>(spool_->pending_messages()));
  loop_.run();
  spool_->commit_staged();
  if (!tlsrpt_pending_.empty()) tlsrpt_intake();
  spool_->flush();
  graveyard_.clear();
  outbound_.reset();
  relay_.reset();
  log::info("worker.stopped").kv("worker", index_).kv("spooled", static_cast<uint64_t>(spool_->pending_messages()));
}

void Worker::route(spool::SpoolEntry* e) {
  if (e->held) {
    log::info("message.held").kv("worker", index_).kv("qid", e->envelope.queue_id()).kv("reason", "held by an administrator");
    return;
  }
  if (!e->envelope.outbound()) {
    relay_->enqueue(e);
  } else if (outbound_) {
    outbound_->enqueue(e);
  } else {
    log::error("message.held").kv("worker", index_).kv("qid", e->envelope.queue_id())
        .kv("reason", "outbound intake message but outbound.enabled is false; kept in the spool");
  }
}

void Worker::reload(std::shared_ptr<const RuntimeConfig> runtime) {
  loop_.post([this, runtime] {
    runtime_ = runtime;
    relay_->set_runtime(runtime_);
    if (outbound_) outbound_->set_runtime(runtime_);
  });
}

void Worker::policies_changed() {
  loop_.post([this] {
    if (outbound_) outbound_->policies_changed();
  });
}

void Worker::stop(int64_t grace_ms) {
  loop_.post([this, grace_ms] { begin_stop(grace_ms); });
}

void Worker::begin_stop(int64_t grace_ms) {
  if (stopping_) return;
  stopping_ = true;
  stop_deadline_ms_ = loop_.now_ms() + grace_ms;
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    loop_.remove(listen_fds_[i]);
    ::close(listen_fds_[i]);
    listen_fds_[i] = -1;
  }
  std::vector<InboundConnection*> live;
  for (auto& [p, c] : connections_) live.push_back(p);
  for (auto* c : live) c->shutdown();
  relay_->stop();
  if (outbound_) outbound_->stop();
  stop_timer_ = std::make_unique<FunctionTimer>(&loop_, [] {});  // wakes the loop at the deadline
  stop_timer_->arm_at(stop_deadline_ms_);
}

std::string Worker::rfc5322_date() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

void Worker::accept_ready(size_t li) {
  for (int i = 0; i < 64 && !stopping_; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(listen_fds_[li], reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors: one client told to come back later (go on), or accepting paused.
      if ((errno == EMFILE || errno == ENFILE) && refuse_without_descriptors(li)) continue;
      return;
    }
    // SMTP is request/response in small writes: without TCP_NODELAY a reply written after TLS session
    // tickets waits for the client's delayed ACK (about 40 ms per session).
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SocketAddress peer = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    // The CPU whose softirq processed the connection; with XDP steering and the SK_REUSEPORT program
    // it is this worker's CPU, so a mismatch means packets and session run on different cores.
    int incoming_cpu = -1;
    socklen_t cpu_len = sizeof incoming_cpu;
    if (::getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &incoming_cpu, &cpu_len) == 0 && incoming_cpu >= 0 &&
        static_cast<unsigned>(incoming_cpu) != cpu_) {
      stats::bump(counters_.incoming_cpu_mismatch);
    }
    const ListenerRuntime& lr = runtime_->listeners[li];
    if (!lr.allowed_networks.empty()) {
      auto host = xdp::IpPrefix::parse(peer.ip_text());
      const bool allowed = host && std::any_of(lr.allowed_networks.begin(), lr.allowed_networks.end(),
                                               [&](const xdp::IpPrefix& n) { return n.contains(*host); });
      if (!allowed) {
        stats::bump(counters_.connections_refused_source);
        refuse_connection(fd, lr, "554 5.7.1 " + runtime_->config.hostname() + " " + peer.ip_text() +
                                      " may not submit outbound mail here");
        log::warning("session.refused").kv("worker", index_).kv("listener", lr.config.name()).kv("peer", peer.to_string())
            .kv("reason", "not in allowed_networks");
        continue;
      }
    }
    auto verdict = limits_.acquire(peer, runtime_->connections_per_source, runtime_->sessions_total);
    if (verdict != ConnectionLimits::Verdict::kOk) {
      stats::bump(verdict == ConnectionLimits::Verdict::kTooManyFromSource ? counters_.connections_refused_source
                                                                            : counters_.connections_refused_total);
      refuse_connection(fd, lr, verdict == ConnectionLimits::Verdict::kTooManyFromSource
                                    ? "421 4.7.0 " + runtime_->config.hostname() + " Error: too many connections from " + peer.ip_text()
                                    : busy_reply());
      log::info("session.refused").kv("worker", index_).kv("listener", lr.config.name()).kv("peer", peer.to_string())
          .kv("reason", verdict == ConnectionLimits::Verdict::kTooManyFromSource ? "too many connections from source" : "too many sessions");
      continue;
    }
    auto conn = std::make_unique<InboundConnection>(*this, fd, peer, runtime_, lr);
    InboundConnection* raw = conn.get();
    connections_.emplace(raw, std::move(conn));
    stats::bump(counters_.connections_accepted);
    stats::set(counters_.sessions_active, connections_.size());
    raw->start();
  }
}

std::string Worker::busy_reply() const { return "421 4.3.2 " + runtime_->config.hostname() + " Service busy, try again later"; }

// A connection refused before its session starts: the reply (without CRLF) once, without waiting,
// then closed. On an implicit-TLS port a plaintext reply would be noise: it is just closed.
void Worker::refuse_connection(int fd, const ListenerRuntime& listener, const std::string& reply) {
  if (!listener.policy->implicit_tls) {
    const std::string line = reply + "\r\n";
    ssize_t n = ::send(fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n;
  }
  ::close(fd);
}

// Out of file descriptors (EMFILE/ENFILE): the listening socket stays readable, so a level-triggered
// loop would spin on failing accepts while clients wait in the backlog. The worker keeps one spare
// descriptor for this: it is closed, one connection is accepted with it, told 421 and closed, and the
// spare is taken again; the backlog drains with clear answers. Without a spare (another thread took
// the descriptor), accepting pauses for 100 ms. Logged at most once a second with the count.
bool Worker::refuse_without_descriptors(size_t li) {
  bool refused = false;
  if (spare_fd_ >= 0) {
    ::close(spare_fd_);
    spare_fd_ = -1;
    int fd = ::accept4(listen_fds_[li], nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      refuse_connection(fd, runtime_->listeners[li], busy_reply());
      stats::bump(counters_.connections_refused_total);
      ++fd_refused_;
      refused = true;
    }
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  const int64_t now = loop_.now_ms();
  if (now - fd_exhausted_logged_ms_ >= 1000) {
    log::error("accept.fd_exhausted").kv("worker", index_).kv("refused", fd_refused_).kv("sessions", static_cast<uint64_t>(connections_.size()))
        .kv("action", spare_fd_ >= 0 ? "421 to new connections" : "accepting paused");
    fd_exhausted_logged_ms_ = now;
    fd_refused_ = 0;
  }
  if (refused && spare_fd_ >= 0) return true;
  if (!accept_paused_) {
    accept_paused_ = true;
    for (size_t i = 0; i < listen_fds_.size(); ++i)
      if (listen_fds_[i] >= 0) loop_.modify(listen_fds_[i], 0, acceptors_[i].get());
    accept_resume_timer_->arm_at(now + 100);
  }
  return false;
}

void Worker::retire(InboundConnection* c) {
  auto it = connections_.find(c);
  if (it == connections_.end()) return;
  graveyard_.push_back(std::move(it->second));
  connections_.erase(it);
  stats::set(counters_.sessions_active, connections_.size());
}

// Opened at start when the feature is on (so that expiry runs from then on), else at the first report
// after a reload turned it on. A store that cannot be opened is logged once; mail flows regardless.
bool Worker::open_tlsrpt_store() {
  if (tlsrpt_inbound_) return true;
  if (tlsrpt_store_failed_) return false;
  const auto& in = runtime_->config.tlsrpt().inbound();
  std::string error;
  const int64_t retention = in.retention().seconds() > 0 ? in.retention().seconds() : 90 * 86400;
  tlsrpt_inbound_ = trace::TlsRptInboundStore::open(
      trace::TlsRptInboundStore::path_for(runtime_->config.spool().directory(), index_), retention, &error);
  if (!tlsrpt_inbound_) {
    tlsrpt_store_failed_ = true;
    log::error("tlsrpt.inbound.unavailable").kv("worker", index_).kv("reason", error);
    return false;
  }
  return true;
}

void Worker::message_committed(const std::string& queue_id) {
  if (!runtime_->config.tlsrpt().inbound().mailboxes().empty()) tlsrpt_pending_.push_back(queue_id);
}

// Inbound TLS-RPT reports (RFC 8460 5.3): runs after commit_staged, when the messages are durable and
// their 250 replies written, so parsing never delays or refuses an SMTP transaction; the message is
// delivered like any other whatever the outcome. The work is bounded: at most
// tlsrpt.inbound.max_message_size is read, and the inflated report at most 16 times that, capped.
void Worker::tlsrpt_intake() {
  // Enough for any real report (they are kilobytes) while keeping a worker's pause short.
  constexpr uint64_t kMaxReportJson = 16 << 20;
  std::vector<std::string> pending;
  pending.swap(tlsrpt_pending_);
  const auto& in = runtime_->config.tlsrpt().inbound();
  for (const std::string& qid : pending) {
    spool::SpoolEntry* e = spool_->find(qid);
    if (e == nullptr || e->envelope.outbound()) continue;  // reports arrive from the Internet, not the intake
    bool to_mailbox = false;
    for (const auto& rc : e->envelope.recipients()) {
      std::string a = rc.address();
      for (char& c : a) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      to_mailbox = to_mailbox || std::find(in.mailboxes().begin(), in.mailboxes().end(), a) != in.mailboxes().end();
    }
    if (!to_mailbox) continue;
    if (!open_tlsrpt_store()) continue;
    const auto& env = e->envelope;
    trace::InboundReport row;
    row.id = qid;
    row.received = env.received_at_us() > 0 ? env.received_at_us() / 1000000 : static_cast<int64_t>(std::time(nullptr));
    row.worker = index_;
    row.size = env.size();
    std::string body;
    if (env.size() > in.max_message_size()) {
      row.error = "message too large to parse (" + std::to_string(env.size()) + " bytes; tlsrpt.inbound.max_message_size is " +
                  std::to_string(in.max_message_size()) + ")";
      // Still say who sent it and for which domain: the header fields from the message's start.
      if (spool_->read_body(*e, 0, 64 << 10, body)) {
        const size_t end = body.find("\r\n\r\n");
        tlsrpt::ReceivedReport rr = tlsrpt::extract_report(std::string_view(body).substr(0, end == std::string::npos ? body.size() : end + 4));
        row.from = rr.from;
        row.subject = rr.subject;
        row.report_domain = rr.report_domain;
        row.submitter = rr.report_submitter;
      }
    } else if (!spool_->read_body(*e, 0, static_cast<size_t>(env.size()), body)) {
      row.error = "cannot read the message from the spool";
    } else {
      tlsrpt::ExtractOptions o;
      o.max_json = static_cast<size_t>(std::min<uint64_t>(16 * in.max_message_size(), kMaxReportJson));
      tlsrpt::ReceivedReport rr = tlsrpt::extract_report(body, o);
      row.from = rr.from;
      row.subject = rr.subject;
      row.report_domain = rr.report_domain;
      row.submitter = rr.report_submitter;
      if (rr.report) {
        const tlsrpt::Report& rep = *rr.report;
        row.organization = rep.organization_name;
        row.report_id = rep.report_id;
        row.contact_info = rep.contact_info;
        row.start_datetime = rep.date_range.start_datetime;
        row.end_datetime = rep.date_range.end_datetime;
        for (const auto& p : rep.policies) {
          if (std::find(row.policy_domains.begin(), row.policy_domains.end(), p.policy.policy_domain) == row.policy_domains.end())
            row.policy_domains.push_back(p.policy.policy_domain);
          row.successes += p.summary.total_successful_session_count;
          row.failures += p.summary.total_failure_session_count;
        }
        row.report_json = tlsrpt::to_json(rep);
      } else {
        row.error = rr.error;
      }
    }
    std::string domains;
    for (const auto& d : row.policy_domains) domains += (domains.empty() ? "" : ",") + d;
    std::string error;
    const bool stored = tlsrpt_inbound_->add(row, &error);
    if (row.error.empty()) {
      stats::bump(counters_.tlsrpt_reports_parsed);
      log::info("tlsrpt.inbound").kv("worker", index_).kv("qid", qid).kv("from", row.from).kv("organization", row.organization)
          .kv("report_id", row.report_id).kv("domain", domains).kv("successes", row.successes).kv("failures", row.failures)
          .kv("stored", stored ? "yes" : error);
    } else {
      stats::bump(counters_.tlsrpt_reports_rejected);
      log::warning("tlsrpt.inbound").kv("worker", index_).kv("qid", qid).kv("from", row.from).kv("domain", row.report_domain)
          .kv("error", row.error).kv("stored", stored ? "yes" : error);
    }
  }
}

void Worker::end_of_turn() {
  if (spool_->has_staged()) {
    stats::bump(counters_.spool_commits);
    spool_->commit_staged();
  }
  if (!tlsrpt_pending_.empty()) tlsrpt_intake();
  if (tlsrpt_inbound_ && loop_.now_ms() - tlsrpt_expired_ms_ >= 3600 * 1000) {
    tlsrpt_inbound_->expire(static_cast<int64_t>(std::time(nullptr)));
    tlsrpt_expired_ms_ = loop_.now_ms();
  }
  stats::set(counters_.spool_pending, spool_->pending_messages());
  graveyard_.clear();
  relay_->reap();
  if (outbound_) {
    outbound_->reap();
    outbound_->flush_trace();
  }
  if (loop_.now_ms() - last_flush_ms_ >= 1000) {
    spool_->flush();
    last_flush_ms_ = loop_.now_ms();
  }
  if (stopping_) {
    bool done = connections_.empty() && relay_->idle() && (!outbound_ || outbound_->idle());
    if (done || loop_.now_ms() >= stop_deadline_ms_) {
      std::vector<InboundConnection*> live;
      for (auto& [p, c] : connections_) live.push_back(p);
      // Grace is over: a peer still sending was never acknowledged, so closing loses nothing.
      for (auto* c : live) c->abort("shutdown grace expired");
      relay_->abort_all();
      if (outbound_) outbound_->abort_all();
      graveyard_.clear();
      relay_->reap();
      if (outbound_) outbound_->reap(true);
      loop_.stop();
    }
  }
}

}  // namespace mxedge::worker
