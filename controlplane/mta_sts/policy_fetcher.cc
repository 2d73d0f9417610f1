#include "controlplane/mta_sts/policy_fetcher.h"

#include <curl/curl.h>
#include <event2/event.h>

#include <algorithm>
#include <cctype>

namespace mxedge::mta_sts {
namespace {

using Clock = std::chrono::steady_clock;

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

std::string media_type(const char* content_type) {
  std::string t = content_type ? content_type : "";
  t = t.substr(0, t.find(';'));
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.erase(t.begin());
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

}  // namespace

struct PolicyFetcher::Transfer {
  PolicyFetcher* owner = nullptr;
  CURL* easy = nullptr;
  curl_slist* resolve = nullptr;
  Callback callback;
  FetchResult result;
  Clock::time_point start;
  bool too_large = false;
  char errbuf[CURL_ERROR_SIZE] = {0};

  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    if (resolve) curl_slist_free_all(resolve);
  }

  static size_t on_write(char* data, size_t size, size_t n, void* arg) {
    auto* t = static_cast<Transfer*>(arg);
    const size_t len = size * n;
    if (t->result.body.size() + len > t->owner->options_.max_body) {
      t->too_large = true;
      return 0;  // abort the transfer
    }
    t->result.body.append(data, len);
    return len;
  }
};

struct PolicyFetcher::Socket {
  struct event* ev = nullptr;
  ~Socket() {
    if (ev) event_free(ev);
  }
};

PolicyFetcher::PolicyFetcher(resolver::Resolver& resolver, const FetchOptions& options)
    : resolver_(resolver), options_(options) {
  static CurlGlobal global;
  multi_ = curl_multi_init();
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &PolicyFetcher::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &PolicyFetcher::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  timer_ = evtimer_new(resolver_.event_base(), &PolicyFetcher::on_timer_event, this);
}

PolicyFetcher::~PolicyFetcher() {
  for (auto& [ptr, t] : transfers_) curl_multi_remove_handle(multi_, t->easy);
  transfers_.clear();
  curl_multi_cleanup(multi_);  // removes the sockets (on_socket CURL_POLL_REMOVE)
  event_free(timer_);
}

void PolicyFetcher::fetch(std::string_view domain, Callback callback) {
  auto t = std::make_unique<Transfer>();
  t->owner = this;
  t->callback = std::move(callback);
  t->start = Clock::now();
  t->result.domain = resolver::normalize_name(domain);
  const std::string host = "mta-sts." + t->result.domain;
  t->result.url = "https://" + host + (options_.port == 443 ? "" : ":" + std::to_string(options_.port)) +
                  "/.well-known/mta-sts.txt";
  if (!options_.proxy.empty()) {  // the proxy resolves the host itself
    start_transfer(std::move(t));
    return;
  }
  // Addresses of the policy host, A and AAAA at once, from our resolver.
  struct Lookup {
    std::unique_ptr<Transfer> t;
    int waiting = 2;
    std::string why;
  };
  auto l = std::make_shared<Lookup>();
  l->t = std::move(t);
  resolving_ += 1;
  for (uint16_t type : {resolver::kTypeA, resolver::kTypeAaaa}) {
    resolver_.lookup(host, type, [this, l, host](const resolver::Resolver::Result& r, bool) {
      if (r->security == resolver::Security::kSecure || r->security == resolver::Security::kInsecure) {
        for (const std::string& a : r->answer.addresses) l->t->result.addresses.push_back(a);
      } else if (l->why.empty()) {
        l->why = std::string(resolver::to_string(r->security)) + (r->why.empty() ? "" : ": " + r->why);
      }
      if (--l->waiting > 0) return;
      resolving_ -= 1;
      std::unique_ptr<Transfer> tr = std::move(l->t);
      if (tr->result.addresses.empty()) {
        tr->result.error = "policy host " + host + " has no address" + (l->why.empty() ? "" : " (" + l->why + ")");
        tr->result.seconds = std::chrono::duration<double>(Clock::now() - tr->start).count();
        // Deliver from the event loop, never from inside fetch() (the lookup may have been cached).
        auto* raw = tr.release();
        event_base_once(resolver_.event_base(), -1, EV_TIMEOUT, [](int, short, void* arg) {
          std::unique_ptr<Transfer> done(static_cast<Transfer*>(arg));
          done->callback(done->result);
        }, raw, nullptr);
        return;
      }
      start_transfer(std::move(tr));
    });
  }
}

void PolicyFetcher::start_transfer(std::unique_ptr<Transfer> t) {
  CURL* e = curl_easy_init();
  t->easy = e;
  const std::string host = "mta-sts." + t->result.domain;
  if (!t->result.addresses.empty()) {
    std::string entry = host + ":" + std::to_string(options_.port) + ":";
    for (size_t i = 0; i < t->result.addresses.size(); ++i) {
      const std::string& a = t->result.addresses[i];
      entry += (i ? "," : "") + (a.find(':') != std::string::npos ? "[" + a + "]" : a);
    }
    t->resolve = curl_slist_append(nullptr, entry.c_str());
    curl_easy_setopt(e, CURLOPT_RESOLVE, t->resolve);
  }
  curl_easy_setopt(e, CURLOPT_URL, t->result.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!options_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_file.c_str());
  // No CA directory: with one set (Debian's curl sets /etc/ssl/certs by default) curl 7.88 builds a
  // new certificate store per connection and skips its shared CA cache, decoding certificates from
  // disk for every fetch. The CA file (or the default bundle) alone is cached across transfers.
  curl_easy_setopt(e, CURLOPT_CAPATH, nullptr);
  curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 3600L);
  curl_easy_setopt(e, CURLOPT_PROXY, options_.proxy.c_str());  // "" also ignores *_proxy variables
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.total_timeout.count()));
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options_.max_body));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "mxedge-mta-sts/1");
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, nullptr);  // no compression: the limit is on the wire
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
  Transfer* raw = t.get();
  transfers_.emplace(raw, std::move(t));
  curl_multi_add_handle(multi_, e);
}

int PolicyFetcher::on_socket(void*, int fd, int what, void* userp, void* socketp) {
  auto* self = static_cast<PolicyFetcher*>(userp);
  auto* s = static_cast<Socket*>(socketp);
  if (what == CURL_POLL_REMOVE) {
    delete s;
    curl_multi_assign(self->multi_, fd, nullptr);
    return 0;
  }
  if (!s) {
    s = new Socket;
    curl_multi_assign(self->multi_, fd, s);
  }
  if (s->ev) event_free(s->ev);
  const short kind = static_cast<short>(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
  s->ev = event_new(self->resolver_.event_base(), fd, kind, &PolicyFetcher::on_socket_event, self);
  event_add(s->ev, nullptr);
  return 0;
}

int PolicyFetcher::on_timer(CURLM*, long timeout_ms, void* userp) {
  auto* self = static_cast<PolicyFetcher*>(userp);
  if (timeout_ms < 0) {
    evtimer_del(self->timer_);
    return 0;
  }
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  evtimer_add(self->timer_, &tv);
  return 0;
}

void PolicyFetcher::on_socket_event(int fd, short what, void* arg) {
  auto* self = static_cast<PolicyFetcher*>(arg);
  const int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
  int running = 0;
  curl_multi_socket_action(self->multi_, fd, action, &running);
  self->check_done();
}

void PolicyFetcher::on_timer_event(int, short, void* arg) {
  auto* self = static_cast<PolicyFetcher*>(arg);
  int running = 0;
  curl_multi_socket_action(self->multi_, CURL_SOCKET_TIMEOUT, 0, &running);
  self->check_done();
}

void PolicyFetcher::check_done() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* e = msg->easy_handle;
    const CURLcode code = msg->data.result;
    Transfer* raw = nullptr;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, &raw);
    curl_multi_remove_handle(multi_, e);
    auto it = transfers_.find(raw);
    if (it == transfers_.end()) continue;
    std::unique_ptr<Transfer> t = std::move(it->second);
    transfers_.erase(it);
    FetchResult& r = t->result;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.http_status);
    char* ct = nullptr;
    curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct);
    r.content_type = ct ? ct : "";
    r.seconds = std::chrono::duration<double>(Clock::now() - t->start).count();
    const std::string limit = std::to_string(options_.max_body);
    if (t->too_large) {
      r.error = "policy body larger than " + limit + " bytes";
    } else if (code == CURLE_FILESIZE_EXCEEDED) {
      r.error = "policy larger than " + limit + " bytes (Content-Length)";
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
      r.error = "timeout: " + std::string(t->errbuf[0] ? t->errbuf : curl_easy_strerror(code));
    } else if (code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE) {
      r.error = "certificate verification failed: " + std::string(t->errbuf[0] ? t->errbuf : curl_easy_strerror(code));
    } else if (code != CURLE_OK) {
      r.error = std::string(curl_easy_strerror(code)) + (t->errbuf[0] ? ": " + std::string(t->errbuf) : "");
    } else if (r.http_status != 200) {
      r.error = "HTTP status " + std::to_string(r.http_status) +
                (r.http_status >= 300 && r.http_status < 400 ? " (redirects are not followed)" : "");
    } else if (media_type(ct) != "text/plain") {
      r.error = "Content-Type is '" + r.content_type + "', not text/plain";
    } else {
      r.ok = true;
    }
    if (!r.ok) r.body.clear();
    t->callback(r);
  }
}

void PolicyFetcher::run_until(const std::function<bool()>& done) {
  while (!done() && (in_flight() > 0 || resolver_.in_flight() > 0)) event_base_loop(resolver_.event_base(), EVLOOP_ONCE);
}

}  // namespace mxedge::mta_sts
