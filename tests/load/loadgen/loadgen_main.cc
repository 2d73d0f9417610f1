// loadgen_main.cc - mxedge-loadgen, the SMTP load generator used to benchmark
// mxedge against Postfix.
//
// DESCRIPTION
//   Parses the command line (CLI11), prepares what every worker shares (the
//   resolved server address, the SSL_CTX, the message template), raises the
//   descriptor limit, starts --threads LoadWorker threads, prints a progress
//   line once a second, and finally merges the workers' statistics into the
//   text and JSON reports.
//
//   Why a new tool: smtp-source has no TLS, and postal only does anonymous TLS;
//   the benchmark needs STARTTLS and implicit TLS with real certificates, open-
//   and closed-loop load, and thousands of idle TLS sessions.
//
//   Exit status: 0 when every session succeeded, 1 when any failed or was
//   aborted (or the run could not start), 2 on a usage error.
//
// STANDARDS
//   See smtp_client_session.h (RFC 5321, 2920, 3207, 8314) and report.h
//   (RFC 8259).
//
// SECURITY
//   Runs unprivileged; it only needs more file descriptors, which it takes up
//   to the hard limit. It talks to the server under test, which is untrusted:
//   every reply is parsed with bounds (dataplane/smtp/smtp_reply.h). Option
//   values that end up in SMTP commands or headers are checked for CR, LF and
//   other controls.
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

// GCC 12's -Wnull-dereference reports a false positive inside CLI11's inline
// CLI::detail::split (a vector<string> reallocation); it is not our code and
// not a real null dereference.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include "load_worker.h"
#include "loadgen_config.h"
#include "message_template.h"
#include "report.h"
#include "run_stats.h"
#include "tls_client.h"

namespace mxedge::loadgen {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailures = 1;
constexpr int kExitUsage = 2;

RunControl g_control;

extern "C" void on_interrupt(int) { g_control.interrupts.fetch_add(1); }

const char* const kFooter = R"(
Load shapes:
  closed loop (default)  keep --concurrency sessions in flight until --sessions
                         have run or --duration has passed (default: 100 sessions).
  open loop (--rate N)   start N sessions per second whatever the completions,
                         at most --concurrency (default then 1000) at once. A
                         session starting >10 ms after its slot counts as late;
                         one due before the end but never started, as missed.
  idle (--idle N --hold S)
                         open N sessions (at most --concurrency, default then 100,
                         handshaking at a time; --rate paces the opening), stop
                         after the EHLO that follows TLS, hold them idle for S
                         seconds once all have settled, then QUIT. The file
                         descriptor limit is raised to the hard limit; use
                         --source-addresses beyond ~28,000 sessions per address.

Each session: connect, 220, EHLO, [STARTTLS, 220, TLS handshake, EHLO], then
--messages-per-session transactions (MAIL, RCPT x --recipients, DATA, content),
then QUIT and 221. MAIL, the RCPTs and DATA go in one write when the server
offers PIPELINING (RFC 2920) unless --no-pipelining. Any other reply code than
expected fails the session: its error is counted by phase and reply code, and
the session ends with QUIT when the protocol state still allows it.

Latencies (log-linear histogram, ~1% accuracy), in milliseconds:
  connect->greeting  from the connect() call to the 220 greeting
  starttls           from sending STARTTLS to a completed handshake
                     (implicit TLS: from the connect() call to the handshake)
  data->250          from the last byte of "<CRLF>.<CRLF>" written to the reply

Report: text on stdout (on stderr when --json - takes stdout); --json FILE
writes one JSON object with stable keys. Progress goes to stderr once a second.
SIGINT/SIGTERM: stop starting sessions and finish those in flight; twice: abort.

Exit status: 0 all sessions succeeded, 1 some failed or were aborted, 2 usage.
The server certificate is not verified unless --verify is given.)";

struct Options {
  std::string server;
  std::string tls = "starttls";
  bool verify = false;
  std::string ca_file;
  std::string verify_name;
  std::string tls_min;
  std::string tls_max;
  std::string sni;
  unsigned threads = 1;
  std::uint64_t sessions = 0;
  unsigned concurrency = 0;
  double rate = 0;
  double duration = 0;
  std::uint64_t messages_per_session = 1;
  std::string message_size = "4KiB";
  unsigned recipients = 1;
  std::string from = "loadgen@loadgen.example.test";
  std::string to = "rcpt@example.test";
  std::string to_domain;
  std::string ehlo = "loadgen.example.test";
  bool no_pipelining = false;
  double timeout = 60;
  std::uint64_t idle = 0;
  double hold = 0;
  std::vector<std::string> source_addresses;
  std::string json;
  bool timeline = false;
  bool quiet = false;
  bool exit_on_error = false;
};

int tls_version_of(const std::string& text) {
  if (text == "1.0") return TLS1_VERSION;
  if (text == "1.1") return TLS1_1_VERSION;
  if (text == "1.2") return TLS1_2_VERSION;
  if (text == "1.3") return TLS1_3_VERSION;
  return 0;
}

bool is_ip_literal(const std::string& host) { return parse_ip_literal(host).has_value(); }

// Turns validated options into the run configuration. Returns an error text
// for problems CLI11 cannot see (they are still usage errors).
std::optional<std::string> build_config(const Options& o, bool concurrency_given, LoadgenConfig& c) {
  c.server_text = o.server;
  std::string host;
  std::string port;
  if (!split_host_port(o.server, host, port)) {
    return "--server: expected HOST:PORT or [IPv6]:PORT";
  }
  std::string error;
  auto server = resolve_address(host, port, error);
  if (!server) return fmt::format("--server: cannot resolve {}: {}", host, error);
  c.server_host = host;
  c.server = *server;
  for (const std::string& text : o.source_addresses) {
    auto source = parse_ip_literal(text);
    if (!source) return fmt::format("--source-addresses: {} is not an IP address", text);
    if (source->family() != c.server.family()) {
      return fmt::format("--source-addresses: {} is not of the server's address family", text);
    }
    c.source_addresses.push_back(*source);
  }

  c.tls = o.tls == "none" ? TlsMode::kNone : o.tls == "implicit" ? TlsMode::kImplicit : TlsMode::kStarttls;
  c.verify = o.verify;
  c.ca_file = o.ca_file;
  c.sni = o.sni;
  if (c.sni.empty() && !is_ip_literal(host)) c.sni = host;
  c.verify_name = o.verify_name.empty() ? (o.sni.empty() ? std::string() : o.sni) : o.verify_name;
  c.tls_min_version = tls_version_of(o.tls_min);
  c.tls_max_version = tls_version_of(o.tls_max);
  if (c.tls_min_version != 0 && c.tls_max_version != 0 && c.tls_min_version > c.tls_max_version) {
    return "--tls-min is above --tls-max";
  }
  if (!c.sni.empty() && !is_safe_token(c.sni)) return "--sni: not a host name";

  c.threads = o.threads;
  c.timeline = o.timeline;
  c.rate = o.rate;
  c.duration_s = o.duration;
  c.timeout_s = o.timeout;
  c.idle_sessions = o.idle;
  c.hold_s = o.hold;
  if (c.idle_mode()) {
    c.concurrency = concurrency_given ? o.concurrency : 100;
  } else if (c.open_loop()) {
    c.concurrency = concurrency_given ? o.concurrency : 1000;
  } else {
    c.concurrency = concurrency_given ? o.concurrency : 10;
  }
  c.sessions = o.sessions;
  if (!c.idle_mode() && c.sessions == 0 && c.duration_s == 0) c.sessions = 100;
  if (c.threads > c.concurrency) {
    return fmt::format("--threads ({}) must not exceed the concurrency ({})", c.threads, c.concurrency);
  }

  c.messages_per_session = o.messages_per_session;
  const auto size = parse_size(o.message_size);
  if (!size || *size > (std::uint64_t{1} << 30)) {
    return "--message-size: expected a size up to 1GiB such as 4096, 4KiB or 1MiB";
  }
  c.message_size = static_cast<std::size_t>(*size);
  if (!o.from.empty() && !is_safe_token(o.from)) return "--from: not a plain address";
  c.from = o.from;
  if (!is_safe_token(o.ehlo)) return "--ehlo: not a plain host name";
  c.ehlo = o.ehlo;
  if (!o.to_domain.empty()) {
    for (unsigned i = 1; i <= o.recipients; ++i) {
      c.recipients.push_back(fmt::format("user{}@{}", i, o.to_domain));
    }
  } else if (o.recipients == 1) {
    c.recipients.push_back(o.to);
  } else {
    const std::size_t at = o.to.rfind('@');
    if (at == std::string::npos) return "--to: needs local@domain when --recipients > 1";
    for (unsigned i = 1; i <= o.recipients; ++i) {
      c.recipients.push_back(fmt::format("{}{}{}", o.to.substr(0, at), i, o.to.substr(at)));
    }
  }
  for (const std::string& rcpt : c.recipients) {
    if (!is_safe_token(rcpt)) return fmt::format("recipient {}: not a plain address", rcpt);
  }
  c.pipelining_allowed = !o.no_pipelining;
  c.json_path = o.json;
  c.quiet = o.quiet;
  c.exit_on_error = o.exit_on_error;
  return std::nullopt;
}

// Takes the descriptor limit up to the hard limit: idle runs need one
// descriptor per session.
void raise_fd_limit(const LoadgenConfig& config) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  const std::uint64_t wanted = (config.idle_mode() ? config.idle_sessions : config.concurrency) + 32;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) {
    fmt::print(stderr,
               "mxedge-loadgen: warning: only {} file descriptors (hard limit); {} sessions "
               "need about {}\n",
               limit.rlim_cur, config.idle_mode() ? config.idle_sessions : config.concurrency, wanted);
  }
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &action, nullptr);
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

std::vector<WorkerShare> split_work(const LoadgenConfig& config) {
  const unsigned n = config.threads;
  std::vector<WorkerShare> shares(n);
  auto split = [n](std::uint64_t total, unsigned i) { return total / n + (i < total % n ? 1 : 0); };
  for (unsigned i = 0; i < n; ++i) {
    WorkerShare& share = shares[i];
    share.limited = config.sessions != 0;
    share.sessions = split(config.sessions, i);
    share.concurrency = static_cast<unsigned>(std::max<std::uint64_t>(1, split(config.concurrency, i)));
    share.idle_sessions = split(config.idle_sessions, i);
    if (config.rate > 0) {
      share.rate = config.rate / n;
      share.rate_offset_ns = static_cast<std::int64_t>(static_cast<double>(i) * 1e9 / config.rate);
    }
  }
  return shares;
}

struct LiveTotals {
  std::uint64_t done = 0, active = 0, messages = 0, handshakes = 0, errors = 0, idle = 0;
};

LiveTotals sample(const std::vector<std::unique_ptr<LoadWorker>>& workers) {
  LiveTotals t;
  for (const auto& w : workers) {
    const LiveCounters& l = w->live();
    t.done += l.sessions_done.load(std::memory_order_relaxed);
    t.active += l.sessions_active.load(std::memory_order_relaxed);
    t.messages += l.messages_ok.load(std::memory_order_relaxed);
    t.handshakes += l.handshakes.load(std::memory_order_relaxed);
    t.errors += l.errors.load(std::memory_order_relaxed);
    t.idle += l.idle.load(std::memory_order_relaxed);
  }
  return t;
}

int run(const LoadgenConfig& config) {
  raise_fd_limit(config);
  install_signal_handlers();

  SslCtxPtr ssl_ctx;
  if (config.tls != TlsMode::kNone) {
    std::string error;
    ssl_ctx = make_client_context(config, error);
    if (!ssl_ctx) {
      fmt::print(stderr, "mxedge-loadgen: {}\n", error);
      return kExitFailures;
    }
  }
  MessageSpec spec;
  spec.from = config.from.empty() ? "mailer-daemon@" + config.ehlo : config.from;
  spec.to = config.recipients.front();
  spec.domain = config.ehlo;
  spec.size = config.message_size;
  const MessageTemplate message(spec);
  if (message.message_size() != config.message_size && config.messages_per_session != 0 && !config.idle_mode() &&
      !config.quiet) {
    fmt::print(stderr, "mxedge-loadgen: note: messages are {} bytes (headers alone need that)\n",
               message.message_size());
  }

  const auto run_id = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count() ^
                                                 (static_cast<std::int64_t>(getpid()) << 40));
  g_control.workers = config.threads;
  const std::vector<WorkerShare> shares = split_work(config);
  std::vector<std::unique_ptr<LoadWorker>> workers;
  for (unsigned i = 0; i < config.threads; ++i) {
    workers.push_back(std::make_unique<LoadWorker>(config, ssl_ctx.get(), message, g_control, i, shares[i], run_id));
    if (!workers.back()->init()) {
      fmt::print(stderr, "mxedge-loadgen: epoll_create1: {}\n", std::strerror(errno));
      return kExitFailures;
    }
  }

  std::atomic<unsigned> running{config.threads};
  g_control.start_ns = monotonic_ns();
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  for (auto& worker : workers) {
    threads.emplace_back([&worker, &running] {
      worker->run();
      running.fetch_sub(1);
    });
  }

  const std::int64_t start = g_control.start_ns;
  std::int64_t next_report = start + 1'000'000'000;
  std::uint64_t last_messages = 0;
  std::uint64_t last_handshakes = 0;
  bool announced_hold = false;
  int announced_interrupts = 0;
  while (running.load() != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const int interrupts = g_control.interrupts.load();
    if (interrupts != announced_interrupts) {
      announced_interrupts = interrupts;
      fmt::print(stderr, "mxedge-loadgen: {}\n",
                 interrupts == 1 ? "stopping: finishing the sessions in flight (again to abort)" : "aborting");
    }
    const std::int64_t hold_deadline = g_control.hold_deadline_ns.load();
    if (hold_deadline != 0 && !announced_hold && !config.quiet) {
      announced_hold = true;
      fmt::print(stderr, "mxedge-loadgen: holding {} idle sessions for {} s\n", sample(workers).idle, config.hold_s);
    }
    const std::int64_t now = monotonic_ns();
    if (now < next_report) continue;
    next_report += 1'000'000'000;
    if (config.quiet) continue;
    const LiveTotals t = sample(workers);
    const std::string total = config.sessions != 0 ? fmt::format("/{}", config.sessions)
                              : config.idle_mode() ? fmt::format("/{}", config.idle_sessions)
                                                   : std::string();
    fmt::print(stderr, "t={}s sessions={}{} active={} msgs/s={} hs/s={} errors={}{}\n", (now - start) / 1'000'000'000,
               t.done, total, t.active, t.messages - last_messages, t.handshakes - last_handshakes, t.errors,
               config.idle_mode() ? fmt::format(" idle={}", t.idle) : std::string());
    last_messages = t.messages;
    last_handshakes = t.handshakes;
  }
  for (std::thread& thread : threads) thread.join();
  // Elapsed until the last worker finished, not until this loop noticed.
  std::int64_t end = start;
  RunStats total;
  for (const auto& worker : workers) {
    total.merge(worker->stats());
    end = std::max(end, worker->finished_ns());
  }
  const double elapsed_s = static_cast<double>(end - start) / 1e9;

  const bool json_on_stdout = config.json_path == "-";
  if (!config.quiet || !json_on_stdout) {
    print_text_report(json_on_stdout ? stderr : stdout, config, total, elapsed_s);
  }
  if (!config.json_path.empty()) {
    const std::string json = json_report(config, total, elapsed_s);
    if (json_on_stdout) {
      std::fwrite(json.data(), 1, json.size(), stdout);
    } else {
      std::FILE* file = std::fopen(config.json_path.c_str(), "w");
      if (file == nullptr || std::fwrite(json.data(), 1, json.size(), file) != json.size() || std::fclose(file) != 0) {
        fmt::print(stderr, "mxedge-loadgen: cannot write {}: {}\n", config.json_path, std::strerror(errno));
        return kExitFailures;
      }
    }
  }
  std::fflush(stdout);
  const bool all_ok = total.sessions_failed == 0 && total.sessions_aborted == 0;
  return all_ok ? kExitOk : kExitFailures;
}

}  // namespace
}  // namespace mxedge::loadgen

int main(int argc, char** argv) {
  using namespace mxedge::loadgen;
  CLI::App app{
      "mxedge-loadgen: SMTP load generator with STARTTLS, implicit TLS and PIPELINING.\n"
      "Benchmarks an SMTP server (mxedge, Postfix) over loopback or a lab network.",
      "mxedge-loadgen"};
  app.footer(kFooter);
  app.get_formatter()->column_width(38);
  Options o;

  app.add_option("--server", o.server, "Server to load, HOST:PORT or [IPv6]:PORT")->required()->type_name("HOST:PORT");
  app.add_option("--tls", o.tls, "TLS mode (default starttls)")->check(CLI::IsMember({"starttls", "implicit", "none"}));
  auto* verify = app.add_flag("--verify", o.verify, "Verify the server certificate (default: not verified)");
  app.add_option("--ca-file", o.ca_file, "PEM CA certificates for --verify (default: system)")
      ->check(CLI::ExistingFile)
      ->needs(verify);
  app.add_option("--verify-name", o.verify_name,
                 "Name the certificate must match for --verify (default: --sni if given)")
      ->needs(verify);
  app.add_option("--tls-min", o.tls_min, "Lowest TLS version offered")
      ->check(CLI::IsMember({"1.0", "1.1", "1.2", "1.3"}));
  app.add_option("--tls-max", o.tls_max, "Highest TLS version offered")
      ->check(CLI::IsMember({"1.0", "1.1", "1.2", "1.3"}));
  app.add_option("--sni", o.sni, "SNI server name (default: the --server host if not an IP)");

  app.add_option("--threads", o.threads, "Event-loop threads, each with its share of sessions")
      ->check(CLI::Range(1u, 256u));
  auto* sessions =
      app.add_option("--sessions", o.sessions, "Total sessions to run (default 100)")->check(CLI::PositiveNumber);
  auto* concurrency =
      app.add_option("--concurrency,-c", o.concurrency,
                     "Sessions in flight (closed loop, default 10); cap in flight with --rate (default 1000); "
                     "sessions handshaking at once with --idle (default 100)")
          ->check(CLI::Range(1u, 1000000u));
  app.add_option("--rate", o.rate, "Open loop: start this many sessions per second")->check(CLI::PositiveNumber);
  auto* duration = app.add_option("--duration", o.duration,
                                  "Stop starting sessions after SECONDS (with or instead of "
                                  "--sessions)")
                       ->check(CLI::PositiveNumber);
  app.add_option("--messages-per-session", o.messages_per_session,
                 "Messages sent in each session (default 1; 0: connect, TLS, EHLO, QUIT only)");
  app.add_option("--message-size", o.message_size,
                 "Size of each message incl. headers: 4096, 4KiB, 1MiB, 1MB (default 4KiB)")
      ->type_name("BYTES");
  app.add_option("--recipients", o.recipients, "Recipients per message (default 1)")->check(CLI::Range(1u, 10000u));
  app.add_option("--from", o.from, "Envelope sender (default loadgen@loadgen.example.test)");
  auto* to = app.add_option("--to", o.to,
                            "Recipient; with --recipients R > 1, local1@domain..localR@domain "
                            "(default rcpt@example.test)");
  app.add_option("--to-domain", o.to_domain, "Recipients user1@DOMAIN..userR@DOMAIN instead")->excludes(to);
  app.add_option("--ehlo", o.ehlo, "EHLO name (default loadgen.example.test)");
  app.add_flag("--no-pipelining", o.no_pipelining, "Send MAIL, RCPT, DATA in lock-step even if PIPELINING is offered");
  app.add_option("--timeout", o.timeout, "Per-step timeout in SECONDS (default 60)")->check(CLI::PositiveNumber);
  auto* idle = app.add_option("--idle", o.idle, "Idle mode: open N sessions, handshake, then hold them idle")
                   ->check(CLI::PositiveNumber)
                   ->excludes(sessions)
                   ->excludes(duration);
  auto* hold = app.add_option("--hold", o.hold, "Idle mode: SECONDS to hold the idle sessions")
                   ->check(CLI::NonNegativeNumber)
                   ->needs(idle);
  idle->needs(hold);
  app.add_option("--source-addresses", o.source_addresses,
                 "Bind each connection to one of these addresses, round-robin "
                 "(comma-separated), to get past the ephemeral port range")
      ->delimiter(',')
      ->type_name("ADDR,...");
  app.add_flag("--timeline", o.timeline,
               "Add a per-second timeline to the JSON report: sessions ended ok/failed and session latency "
               "percentiles (connect to end) in each second of the run");
  app.add_option("--json", o.json, "Also write the report as one JSON object to FILE (- = stdout)")->type_name("FILE");
  app.add_flag("--quiet,-q", o.quiet, "No progress line (and no text report with --json -)");
  app.add_flag("--exit-on-error", o.exit_on_error, "Stop the run at the first failed session (exit status 1)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  LoadgenConfig config;
  if (auto error = build_config(o, concurrency->count() != 0, config)) {
    fmt::print(stderr, "mxedge-loadgen: {}\nRun with --help for more information.\n", *error);
    return kExitUsage;
  }
  return run(config);
}
