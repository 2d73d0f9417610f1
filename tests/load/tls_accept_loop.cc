// tls_accept_loop.cc - mxedge-tls-accept-loop, the bare OpenSSL reference for TLS handshakes per core.
//
// DESCRIPTION
//   The least a TLS-terminating SMTP server can do per connection, as one thread pinned to one CPU:
//   blocking accept(), SSL_accept() (implicit TLS), "220 bare ESMTP", "250 bare" to EHLO/HELO,
//   "221 bye" to QUIT, one close_notify, close(). No event loop, no per-session state beyond the SSL
//   object, no logging. bench_inbound.py drives it and mxedge-dataplane (one worker on the same CPU)
//   with the same `mxedge-loadgen --tls implicit --messages-per-session 0` command line. Because it
//   serves one connection at a time it waits for the client between its steps, so besides the raw
//   rates, handshakes per CPU-second of each server is the per-core efficiency to compare.
//
//   TCP_NODELAY is set on every accepted socket. Without it this loop serves ~20 sessions/s: the
//   server's last handshake flight (TLS 1.2), or its two NewSessionTicket records (TLS 1.3), is still
//   unacknowledged when the 220 is written, Nagle holds the small segment back, and the client, which
//   has nothing to send, delays its ACK by ~40 ms. A blocking one-connection-at-a-time loop would then
//   measure delayed-ACK timers, not handshake cost. (mxedge does not set TCP_NODELAY and shows the
//   same ~40 ms gap between the handshake and the 220; see bench_inbound.py's output.)
//
//   The SSL_CTX is built by mxedge's own tls::make_server_context (dataplane/tls/tls_context.cc):
//   same minimum version (TLS 1.2), cipher list, options, modes (SSL_MODE_RELEASE_BUFFERS) and
//   session-id context, so both sides of the comparison do exactly the same TLS work.
//
//   Usage: mxedge-tls-accept-loop --listen 127.0.0.1:PORT --cert CHAIN.pem --key KEY.pem
//                                 [--cpu N] [--max-seconds S]
//   Prints "event=tls_accept_loop.ready ..." on stderr once listening; SIGTERM/SIGINT (or
//   --max-seconds, default 600) stop it, and it prints the number of handshakes and sessions.
//
// STANDARDS
//   RFC 8314 (implicit TLS), RFC 5321 section 4.2 (reply syntax) for the three replies it sends.
//
// SECURITY
//   A benchmark tool for loopback: it binds only the address it is given and refuses non-loopback
//   ones. Every read is bounded (kMaxLine per command line) and every socket has send and receive
//   timeouts, so a stuck or hostile client costs at most kIoTimeoutSeconds of the single thread.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/tls/tls_context.h"

namespace {

constexpr std::size_t kMaxLine = 1024;
constexpr int kIoTimeoutSeconds = 10;

volatile sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

struct Options {
  std::string listen;
  std::string cert;
  std::string key;
  int cpu = -1;
  double max_seconds = 600;
};

void usage() {
  std::fprintf(stderr,
               "usage: mxedge-tls-accept-loop --listen 127.0.0.1:PORT --cert CHAIN.pem --key KEY.pem "
               "[--cpu N] [--max-seconds S]\n");
}

bool parse_options(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") return false;
    if (i + 1 >= argc) {
      std::fprintf(stderr, "mxedge-tls-accept-loop: %s needs a value\n", argv[i]);
      return false;
    }
    const char* value = argv[++i];
    if (arg == "--listen") {
      o.listen = value;
    } else if (arg == "--cert") {
      o.cert = value;
    } else if (arg == "--key") {
      o.key = value;
    } else if (arg == "--cpu") {
      o.cpu = std::atoi(value);
    } else if (arg == "--max-seconds") {
      o.max_seconds = std::atof(value);
    } else {
      std::fprintf(stderr, "mxedge-tls-accept-loop: unknown option %s\n", argv[i - 1]);
      return false;
    }
  }
  return !o.listen.empty() && !o.cert.empty() && !o.key.empty() && o.max_seconds > 0;
}

// Binds and listens on a loopback IPv4 "a.b.c.d:port". Returns the socket or -1.
int listen_on(const std::string& text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(text.c_str() + colon + 1)));
  if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &addr.sin_addr) != 1) return -1;
  if ((ntohl(addr.sin_addr.s_addr) >> 24) != 127) {
    std::fprintf(stderr, "mxedge-tls-accept-loop: refusing non-loopback address %s\n", text.c_str());
    return -1;
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4096) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool write_all(SSL* ssl, std::string_view text) {
  while (!text.empty()) {
    const int n = SSL_write(ssl, text.data(), static_cast<int>(text.size()));
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool starts_with_command(std::string_view line, std::string_view verb) {
  if (line.size() < verb.size()) return false;
  for (std::size_t i = 0; i < verb.size(); ++i) {
    char c = line[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != verb[i]) return false;
  }
  return line.size() == verb.size() || line[verb.size()] == ' ' || line[verb.size()] == '\r';
}

// The SMTP part after the handshake. Returns true when the client said QUIT.
bool serve_smtp(SSL* ssl) {
  if (!write_all(ssl, "220 bare ESMTP\r\n")) return false;
  std::string pending;
  char buffer[4096];
  for (;;) {
    const int n = SSL_read(ssl, buffer, sizeof buffer);
    if (n <= 0) return false;
    pending.append(buffer, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t lf; (lf = pending.find('\n', start)) != std::string::npos; start = lf + 1) {
      const std::string_view line(pending.data() + start, lf - start);
      if (starts_with_command(line, "QUIT")) {
        write_all(ssl, "221 bye\r\n");
        return true;
      }
      const bool hello = starts_with_command(line, "EHLO") || starts_with_command(line, "HELO");
      if (!write_all(ssl, hello ? "250 bare\r\n" : "502 5.5.1 bare\r\n")) return false;
    }
    pending.erase(0, start);
    if (pending.size() > kMaxLine) return false;
  }
}

double monotonic_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse_options(argc, argv, options)) {
    usage();
    return 2;
  }
  if (options.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(options.cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
      std::fprintf(stderr, "mxedge-tls-accept-loop: cannot pin to CPU %d\n", options.cpu);
      return 1;
    }
  }
  std::string error;
  const mxedge::tls::ContextPtr ctx = mxedge::tls::make_server_context({{options.cert, options.key}}, &error);
  if (!ctx) {
    std::fprintf(stderr, "mxedge-tls-accept-loop: %s\n", error.c_str());
    return 1;
  }
  const int listen_fd = listen_on(options.listen);
  if (listen_fd < 0) {
    std::fprintf(stderr, "mxedge-tls-accept-loop: cannot listen on %s: %s\n", options.listen.c_str(),
                 std::strerror(errno));
    return 1;
  }

  // No SA_RESTART: a signal interrupts the blocking accept() so the loop sees g_stop at once.
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGALRM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  alarm(static_cast<unsigned>(options.max_seconds + 0.999));

  std::fprintf(stderr, "event=tls_accept_loop.ready listen=%s cpu=%d\n", options.listen.c_str(), options.cpu);
  std::fflush(stderr);

  const double started = monotonic_s();
  unsigned long long handshakes = 0;
  unsigned long long sessions_ok = 0;
  unsigned long long failures = 0;
  const timeval io_timeout{kIoTimeoutSeconds, 0};
  const int one = 1;
  while (g_stop == 0) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::fprintf(stderr, "mxedge-tls-accept-loop: accept: %s\n", std::strerror(errno));
      break;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &io_timeout, sizeof io_timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &io_timeout, sizeof io_timeout);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL* ssl = SSL_new(ctx.get());
    bool clean = false;
    if (ssl != nullptr && SSL_set_fd(ssl, fd) == 1) {
      if (SSL_accept(ssl) == 1) {
        ++handshakes;
        clean = serve_smtp(ssl);
        if (clean) SSL_shutdown(ssl);  // one close_notify, as mxedge does after QUIT
      }
    }
    if (clean) {
      ++sessions_ok;
    } else {
      ++failures;
    }
    SSL_free(ssl);
    ERR_clear_error();
    close(fd);
  }
  close(listen_fd);
  const double elapsed = monotonic_s() - started;
  std::fprintf(stderr, "event=tls_accept_loop.stopped handshakes=%llu sessions_ok=%llu failed=%llu elapsed_s=%.3f\n",
               handshakes, sessions_ok, failures, elapsed);
  return 0;
}
