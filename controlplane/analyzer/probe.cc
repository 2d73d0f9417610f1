#include "controlplane/analyzer/probe.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

#include "dataplane/smtp/smtp_reply.h"
#include "dataplane/tls/tls_context.h"
#include "policy/socket_address.h"

namespace mxedge::analyzer {
namespace {

using Clock = std::chrono::steady_clock;

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* n) const { GENERAL_NAMES_free(n); }
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// strerror_r (GNU): strerror is not thread-safe, and the analyzer runs on a thread of its own.
std::string errno_text(int e) {
  char buf[128];
  return strerror_r(e, buf, sizeof buf);
}

// OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a peer that closed would raise SIGPIPE. The
// analyzer must not change the process's signal dispositions (it runs inside the control plane), so
// SIGPIPE is blocked for this thread while probing and a SIGPIPE raised meanwhile is consumed.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~SigpipeGuard() {
    if (!blocked_) return;
    sigset_t pending;
    sigemptyset(&pending);
    if (!was_pending_ && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{0, 0};
      (void)sigtimedwait(&pipe_, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
  bool blocked_ = false;
};

// Connects with a deadline; -1 with *error set on failure. The socket is blocking afterwards, with
// `io_timeout` on every read and write.
int connect_with_timeout(const SocketAddress& addr, std::chrono::milliseconds timeout,
                         std::chrono::milliseconds io_timeout, std::string* error) {
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *error = "socket: " + errno_text(errno);
    return -1;
  }
  auto fail = [&](std::string what) {
    *error = std::move(what);
    ::close(fd);
    return -1;
  };
  if (::connect(fd, addr.get(), addr.length) != 0) {
    if (errno != EINPROGRESS) return fail("connect: " + errno_text(errno));
    pollfd p{fd, POLLOUT, 0};
    const int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n == 0) return fail("connect: timed out after " + std::to_string(timeout.count()) + " ms");
    if (n < 0) return fail("poll: " + errno_text(errno));
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) return fail("getsockopt: " + errno_text(errno));
    if (so_error != 0) return fail("connect: " + errno_text(so_error));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) return fail("fcntl: " + errno_text(errno));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(io_timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((io_timeout.count() % 1000) * 1000);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
    return fail("setsockopt: " + errno_text(errno));
  return fd;
}

// One SMTP client connection: cleartext on the socket, or TLS once `ssl` is set.
class Session {
 public:
  explicit Session(int fd) : fd_(fd) {}

  void start_tls(SSL* ssl) {
    ssl_ = ssl;
    pending_.clear();
    parser_ = smtp::ReplyParser();
  }
  // Bytes the server sent beyond the last reply (STARTTLS: must be none).
  bool has_pending() const { return !pending_.empty(); }

  bool send(const std::string& line, std::string* error) {
    const std::string data = line + "\r\n";
    size_t off = 0;
    while (off < data.size()) {
      long n;
      if (ssl_ != nullptr) {
        const int r = SSL_write(ssl_, data.data() + off, static_cast<int>(data.size() - off));
        n = r > 0 ? r : -1;
        if (r <= 0) {
          *error = "write: " + tls::last_error();
          return false;
        }
      } else {
        n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) continue;
          *error = "write: " + (errno == EAGAIN ? std::string("timed out") : errno_text(errno));
          return false;
        }
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }

  bool read_reply(smtp::Reply* reply, std::string* error) {
    for (;;) {
      if (!pending_.empty()) {
        std::string_view in(pending_);
        const auto r = parser_.feed(in);
        pending_.erase(0, pending_.size() - in.size());
        if (r == smtp::ReplyParser::Result::kReply) {
          *reply = parser_.take();
          return true;
        }
        if (r == smtp::ReplyParser::Result::kError) {
          *error = "malformed reply: " + parser_.error();
          return false;
        }
      }
      char buf[4096];
      long n;
      if (ssl_ != nullptr) {
        const int r = SSL_read(ssl_, buf, sizeof buf);
        if (r <= 0) {
          const int e = SSL_get_error(ssl_, r);
          *error = e == SSL_ERROR_ZERO_RETURN ? "connection closed by the server" : "read: " + tls::last_error();
          return false;
        }
        n = r;
      } else {
        n = ::recv(fd_, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          *error = "read: " + (errno == EAGAIN ? std::string("timed out") : errno_text(errno));
          return false;
        }
        if (n == 0) {
          *error = "connection closed by the server";
          return false;
        }
      }
      pending_.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  SSL* ssl_ = nullptr;
  std::string pending_;
  smtp::ReplyParser parser_;
};

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kHex[p[i] >> 4]);
    s.push_back(kHex[p[i] & 15]);
  }
  return s;
}

std::string name_text(const X509_NAME* name) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return {};
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

std::string time_text(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  char buf[32];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

mgmt::v1::Certificate describe_certificate(X509* cert, uint32_t depth) {
  mgmt::v1::Certificate c;
  c.set_depth(depth);
  c.set_subject(name_text(X509_get_subject_name(cert)));
  c.set_issuer(name_text(X509_get_issuer_name(cert)));
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
      if (gn->type != GEN_DNS) continue;
      const ASN1_STRING* s = gn->d.dNSName;
      c.add_dns_names(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                  static_cast<size_t>(ASN1_STRING_length(s))));
    }
  }
  c.set_not_before(time_text(X509_get0_notBefore(cert)));
  c.set_not_after(time_text(X509_get0_notAfter(cert)));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // TLSA selector 1 is the DER SubjectPublicKeyInfo (X509_pubkey_digest would hash the key bits only).
  unsigned char* spki = nullptr;
  const int spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &spki);
  if (spki_len > 0 && EVP_Digest(spki, static_cast<size_t>(spki_len), md, &len, EVP_sha256(), nullptr) == 1)
    c.set_spki_sha256(hex(md, len));
  OPENSSL_free(spki);
  if (X509_digest(cert, EVP_sha256(), md, &len) == 1) c.set_cert_sha256(hex(md, len));
  return c;
}

// The WebPKI check MTA-STS enforce makes (RFC 8461 §4.2): the peer's chain to the trust store that
// delivery uses (the OutboundTls context's: outbound.ca_file or the system store), server purpose,
// the MX host name with the flags client_verify.cc sets (no partial wildcards).
void check_webpki(SSL* ssl, const std::string& host_name, tls::OutboundTls& tls, mgmt::v1::Probe* out) {
  out->set_webpki("failed");
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) {
    out->set_webpki_detail("no peer certificate");
    out->set_webpki_result_type("validation-failure");
    return;
  }
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (!ctx ||
      X509_STORE_CTX_init(ctx.get(), SSL_CTX_get_cert_store(tls.context()), leaf, SSL_get_peer_cert_chain(ssl)) != 1) {
    out->set_webpki_detail("cannot set up verification: " + tls::last_error());
    out->set_webpki_result_type("validation-failure");
    return;
  }
  X509_STORE_CTX_set_default(ctx.get(), "ssl_server");
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  X509_VERIFY_PARAM_set1_host(param, host_name.c_str(), host_name.size());
  if (X509_verify_cert(ctx.get()) == 1) {
    out->set_webpki("verified");
    out->set_webpki_detail("chain verified, names " + host_name);
    return;
  }
  const long code = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  out->set_webpki_detail(X509_verify_cert_error_string(code));
  out->set_webpki_result_type(tls::tlsrpt_result_type(code));
}

void record_dane(const policy::HostPolicy& host, const tls::VerifyOutcome& v, mgmt::v1::Probe* out) {
  if (host.tls != policy::TlsRequirement::kDane) {
    out->set_dane("not-applicable");
    return;
  }
  out->set_dane_usage(v.dane_usage);
  out->set_dane_depth(v.match_depth);
  if (v.verified) {
    out->set_dane("verified");
    out->set_dane_detail("TLSA " + std::to_string(v.dane_usage) + " " + std::to_string(v.dane_selector) + " " +
                         std::to_string(v.dane_mtype) + " matched at depth " + std::to_string(v.match_depth));
  } else {
    out->set_dane("failed");
    out->set_dane_detail(v.failure);
    out->set_dane_result_type(v.result_type);
  }
}

}  // namespace

mgmt::v1::Probe probe_address(const policy::HostPolicy& host, const std::string& address, tls::OutboundTls& tls,
                              const ProbeOptions& options) {
  const auto start = Clock::now();
  const SigpipeGuard no_sigpipe;
  mgmt::v1::Probe out;
  out.set_host(host.name);
  out.set_address(address);
  out.set_port(host.port);
  out.set_dane("not-tested");
  out.set_dane_usage(-1);
  out.set_dane_depth(-1);
  out.set_webpki("not-tested");
  auto finish = [&](std::string error) {
    if (!error.empty() && out.error().empty()) out.set_error(std::move(error));
    out.set_elapsed_ms(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
    return out;
  };

  auto addr = SocketAddress::from_ip_port(address, host.port);
  if (!addr) return finish("not an IP address: " + address);
  std::string error;
  Fd fd(connect_with_timeout(*addr, options.connect_timeout, options.command_timeout, &error));
  if (fd.get() < 0) return finish(error);
  out.set_connected(true);

  Session s(fd.get());
  smtp::Reply reply;
  if (!s.read_reply(&reply, &error)) return finish("greeting: " + error);
  out.set_banner(reply.text());
  if (reply.code != 220) {
    (void)s.send("QUIT", &error);
    return finish("greeting is not 220: " + reply.text());
  }
  if (!s.send("EHLO " + options.ehlo_name, &error) || !s.read_reply(&reply, &error)) return finish("EHLO: " + error);
  if (reply.code != 250) {
    (void)s.send("QUIT", &error);
    return finish("EHLO refused: " + reply.text());
  }
  out.set_ehlo_ok(true);
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    std::string kw = reply.lines[i].substr(0, reply.lines[i].find(' '));
    for (char& c : kw) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    out.add_ehlo_keywords(kw);
  }
  out.set_starttls_offered(smtp::ehlo_has(reply, "STARTTLS"));
  if (!out.starttls_offered()) {
    if (s.send("QUIT", &error)) (void)s.read_reply(&reply, &error);
    return finish("");
  }

  if (!s.send("STARTTLS", &error) || !s.read_reply(&reply, &error)) return finish("STARTTLS: " + error);
  if (reply.code != 220) {
    (void)s.send("QUIT", &error);
    return finish("STARTTLS refused: " + reply.text());
  }
  if (s.has_pending()) out.set_error("the server sent data after its STARTTLS reply (discarded)");

  std::unique_ptr<SSL, SslFree> ssl(tls.new_ssl(host, &error));
  if (!ssl) return finish("TLS set-up: " + error);
  if (SSL_set_fd(ssl.get(), fd.get()) != 1) return finish("SSL_set_fd: " + tls::last_error());
  ERR_clear_error();
  if (SSL_connect(ssl.get()) != 1) {
    std::string why = tls::last_error();
    if (why == "unknown TLS error") why = errno == EAGAIN ? "timed out" : "connection closed during the handshake";
    return finish("TLS handshake: " + why);
  }
  out.set_tls(true);
  const smtp::TlsState st = tls::describe(ssl.get());
  out.set_tls_version(st.version);
  out.set_cipher(st.cipher);
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl.get())) {
    for (int i = 0; i < sk_X509_num(chain); ++i)
      *out.add_chain() = describe_certificate(sk_X509_value(chain, i), static_cast<uint32_t>(i));
  }
  record_dane(host, tls.check(ssl.get(), host), &out);
  check_webpki(ssl.get(), host.name, tls, &out);

  s.start_tls(ssl.get());
  if (!s.send("EHLO " + options.ehlo_name, &error) || !s.read_reply(&reply, &error)) {
    out.set_error("EHLO after STARTTLS: " + error);
  } else if (reply.code != 250) {
    out.set_error("EHLO after STARTTLS refused: " + reply.text());
  }
  if (s.send("QUIT", &error)) (void)s.read_reply(&reply, &error);
  SSL_shutdown(ssl.get());
  ERR_clear_error();
  return finish("");
}

}  // namespace mxedge::analyzer
