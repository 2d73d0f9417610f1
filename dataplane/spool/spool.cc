// The worker's durable spool; see spool.h for the layout, the commit protocol and recovery.
#include "dataplane/spool/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "dataplane/spool/crc32c.h"
#include "policy/log.h"

namespace mxedge::spool {
namespace {

constexpr uint32_t kMagic = 0x3153584d;  // "MXS1"
constexpr uint32_t kTypeMessage = 1;
constexpr uint32_t kTypeResult = 2;
constexpr uint32_t kTypeHold = 3;
constexpr size_t kHeaderSize = 16;
constexpr uint32_t kMaxHeadSize = 16 << 20;  // envelopes are far smaller; anything larger is corruption

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void put32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint32_t get32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

bool fsync_dir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool make_dir(const std::string& path, std::string* error) {
  if (::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return true;
  *error = "cannot create " + path + ": " + std::strerror(errno);
  return false;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool parse_segment_name(const std::string& name, uint64_t& seq) {
  if (name.size() != 4 + 16 + 4 || name.compare(0, 4, "seg-") != 0 || name.compare(20, 4, ".log") != 0) return false;
  char* end = nullptr;
  seq = std::strtoull(name.c_str() + 4, &end, 16);
  return end == name.c_str() + 20;
}

mxedge::spool::v1::BodyType to_proto(smtp::BodyParam b) {
  switch (b) {
    case smtp::BodyParam::k7Bit: return mxedge::spool::v1::BODY_TYPE_7BIT;
    case smtp::BodyParam::k8BitMime: return mxedge::spool::v1::BODY_TYPE_8BITMIME;
    default: return mxedge::spool::v1::BODY_TYPE_UNSPECIFIED;
  }
}

mxedge::spool::v1::DsnRet to_proto(smtp::RetParam r) {
  switch (r) {
    case smtp::RetParam::kFull: return mxedge::spool::v1::DSN_RET_FULL;
    case smtp::RetParam::kHdrs: return mxedge::spool::v1::DSN_RET_HDRS;
    default: return mxedge::spool::v1::DSN_RET_UNSPECIFIED;
  }
}

// A message body on its way in: memory first, its own file once it outgrows the memory limit.
class SpoolBody final : public smtp::BodySink {
 public:
  SpoolBody(std::string path, uint64_t memory_limit) : path_(std::move(path)), limit_(memory_limit) {}
  ~SpoolBody() override {
    if (fd_ >= 0) ::close(fd_);
    if (spilled() && !keep_) ::unlink(path_.c_str());
  }

  void append(std::string_view data) override {
    if (error_ != 0) return;
    size_ += data.size();
    buf_.append(data);
    if (fd_ < 0 && buf_.size() > limit_) {
      spilled_ = true;
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd_ < 0) {
        error_ = errno;
        buf_.clear();
        return;
      }
    }
    if (fd_ >= 0 && buf_.size() >= (256 << 10)) write_out();
  }

  // Makes a spilled body durable. Returns 0 or errno.
  int finish() {
    if (error_ == 0 && fd_ >= 0) {
      write_out();
      if (error_ == 0 && ::fdatasync(fd_) != 0) error_ = errno;
    }
    return error_;
  }

  bool spilled() const { return spilled_; }
  const std::string& memory() const { return buf_; }
  void keep() { keep_ = true; }
  int error() const { return error_; }

 private:
  void write_out() {
    const char* p = buf_.data();
    size_t left = buf_.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        error_ = errno;
        break;
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    buf_.clear();
  }

  std::string path_;
  uint64_t limit_;
  int fd_ = -1;
  int error_ = 0;
  uint64_t size_ = 0;
  bool keep_ = false;
  bool spilled_ = false;
  std::string buf_;
};

}  // namespace

Spool::Spool(SpoolOptions options, unsigned worker_index, std::string dir)
    : options_(std::move(options)), worker_(worker_index), dir_(std::move(dir)) {}

Spool::~Spool() {
  flush();
  for (auto& s : segments_) {
    if (s.fd >= 0) ::close(s.fd);
  }
}

std::string Spool::segment_path(uint64_t seq) const {
  char name[32];
  std::snprintf(name, sizeof name, "seg-%016" PRIx64 ".log", seq);
  return dir_ + "/" + name;
}

std::unique_ptr<Spool> Spool::open(const SpoolOptions& options, unsigned worker_index, std::string* error) {
  if (!make_dir(options.directory, error)) return nullptr;
  std::string dir = options.directory + "/w" + std::to_string(worker_index);
  if (!make_dir(dir, error) || !make_dir(dir + "/data", error)) return nullptr;
  std::unique_ptr<Spool> s(new Spool(options, worker_index, dir));
  if (!s->recover(error)) return nullptr;
  if (!s->open_new_segment(error)) return nullptr;
  s->retire_segments();
  return s;
}

bool Spool::adopt_orphans(const std::string& root, unsigned workers, std::string* error) {
  std::string w0 = root + "/w0";
  if (!make_dir(root, error) || !make_dir(w0, error) || !make_dir(w0 + "/data", error)) return false;
  uint64_t next = 0;
  for (const auto& n : list_dir(w0)) {
    uint64_t seq;
    if (parse_segment_name(n, seq)) next = std::max(next, seq + 1);
  }
  bool moved = false;
  for (const auto& name : list_dir(root)) {
    if (name.size() < 2 || name[0] != 'w') continue;
    char* end = nullptr;
    unsigned long k = std::strtoul(name.c_str() + 1, &end, 10);
    if (*end != '\0' || k < workers) continue;
    std::string dir = root + "/" + name;
    // Segments keep their relative order, so RESULT records still follow the messages they settle.
    for (const auto& n : list_dir(dir)) {
      uint64_t seq;
      if (!parse_segment_name(n, seq)) continue;
      char target[64];
      std::snprintf(target, sizeof target, "/seg-%016" PRIx64 ".log", next++);
      if (::rename((dir + "/" + n).c_str(), (w0 + target).c_str()) != 0) {
        *error = "cannot move " + dir + "/" + n + ": " + std::strerror(errno);
        return false;
      }
      moved = true;
    }
    for (const auto& n : list_dir(dir + "/data")) {
      if (::rename((dir + "/data/" + n).c_str(), (w0 + "/data/" + n).c_str()) != 0) {
        *error = "cannot move " + dir + "/data/" + n + ": " + std::strerror(errno);
        return false;
      }
    }
    ::rmdir((dir + "/data").c_str());
    ::rmdir(dir.c_str());
    log::info("spool.adopted").kv("from", dir).kv("into", w0);
  }
  if (moved && (!fsync_dir(w0) || !fsync_dir(w0 + "/data") || !fsync_dir(root))) {
    *error = "cannot sync " + w0;
    return false;
  }
  return true;
}

bool Spool::recover(std::string* error) {
  std::vector<uint64_t> seqs;
  for (const auto& n : list_dir(dir_)) {
    uint64_t seq;
    if (parse_segment_name(n, seq)) seqs.push_back(seq);
  }
  std::sort(seqs.begin(), seqs.end());
  for (size_t i = 0; i < seqs.size(); ++i) {
    Segment seg;
    seg.seq = seqs[i];
    seg.fd = ::open(segment_path(seg.seq).c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
    if (seg.fd < 0) {
      *error = "cannot open " + segment_path(seg.seq) + ": " + std::strerror(errno);
      return false;
    }
    segments_.push_back(seg);
    if (!recover_segment(segments_.back(), i + 1 == seqs.size(), error)) return false;
  }
  // Body files no committed record refers to belong to messages never acknowledged.
  std::unordered_map<std::string, bool> referenced;
  for (auto& [qid, e] : entries_) {
    if (!e->envelope.body_file().empty()) referenced[e->envelope.body_file()] = true;
  }
  for (const auto& n : list_dir(dir_ + "/data")) {
    if (!referenced.count("data/" + n)) ::unlink((dir_ + "/data/" + n).c_str());
  }
  uint64_t pending = 0;
  for (auto& [qid, e] : entries_) {
    recovered_.push_back(e.get());
    ++pending;
  }
  std::sort(recovered_.begin(), recovered_.end(), [](const SpoolEntry* a, const SpoolEntry* b) {
    return a->envelope.received_at_us() < b->envelope.received_at_us();
  });
  if (!seqs.empty() || pending) {
    log::info("spool.recovered").kv("worker", worker_).kv("segments", static_cast<uint64_t>(seqs.size())).kv("messages", pending);
  }
  return true;
}

bool Spool::recover_segment(Segment& seg, bool is_last, std::string* error) {
  struct stat st{};
  if (::fstat(seg.fd, &st) != 0) {
    *error = "cannot stat " + segment_path(seg.seq);
    return false;
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(seg.fd, data.data() + got, data.size() - got, static_cast<off_t>(got));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      *error = "cannot read " + segment_path(seg.seq);
      return false;
    }
    got += static_cast<size_t>(n);
  }
  size_t pos = 0;
  while (pos < data.size()) {
    bool bad = data.size() - pos < kHeaderSize;
    uint32_t type = 0, length = 0;
    if (!bad) {
      type = get32(&data[pos + 4]);
      length = get32(&data[pos + 8]);
      bad = get32(&data[pos]) != kMagic || data.size() - pos - kHeaderSize < length ||
            crc32c(0, &data[pos + kHeaderSize], length) != get32(&data[pos + 12]);
    }
    if (bad) {
      if (is_last) {
        // A torn append from a crash: never acknowledged, so dropping it loses nothing.
        log::warning("spool.torn_tail").kv("segment", segment_path(seg.seq)).kv("offset", static_cast<uint64_t>(pos));
        if (::ftruncate(seg.fd, static_cast<off_t>(pos)) != 0 || ::fdatasync(seg.fd) != 0) {
          *error = "cannot truncate " + segment_path(seg.seq);
          return false;
        }
      } else {
        log::error("spool.corrupt_record").kv("segment", segment_path(seg.seq)).kv("offset", static_cast<uint64_t>(pos));
      }
      break;
    }
    const char* payload = &data[pos + kHeaderSize];
    if (type == kTypeMessage && length >= 4) {
      uint32_t env_len = get32(payload);
      auto e = std::make_unique<SpoolEntry>();
      if (env_len <= length - 4 && e->envelope.ParseFromArray(payload + 4, static_cast<int>(env_len))) {
        e->segment = seg.seq;
        e->body_offset = pos + kHeaderSize + 4 + env_len;
        e->recipients.assign(static_cast<size_t>(e->envelope.recipients_size()), RecipientState::kPending);
        ++seg.unsettled;
        entries_[e->envelope.queue_id()] = std::move(e);
      } else {
        log::error("spool.bad_envelope").kv("segment", segment_path(seg.seq)).kv("offset", static_cast<uint64_t>(pos));
      }
    } else if (type == kTypeHold) {
      mxedge::spool::v1::HoldState h;
      if (h.ParseFromArray(payload, static_cast<int>(length))) {
        auto it = entries_.find(h.queue_id());
        if (it != entries_.end()) it->second->held = h.held();
      }
    } else if (type == kTypeResult) {
      mxedge::spool::v1::DeliveryResult r;
      if (r.ParseFromArray(payload, static_cast<int>(length))) {
        auto it = entries_.find(r.queue_id());
        if (it != entries_.end()) {
          SpoolEntry& e = *it->second;
          for (const auto& rr : r.results()) {
            if (rr.index() < e.recipients.size())
              e.recipients[rr.index()] = rr.outcome() == mxedge::spool::v1::RECIPIENT_OUTCOME_DELIVERED ? RecipientState::kDelivered : RecipientState::kFailed;
          }
          bool settled = std::all_of(e.recipients.begin(), e.recipients.end(), [](RecipientState s) { return s != RecipientState::kPending; });
          if (settled) {
            if (Segment* s = segment(e.segment)) --s->unsettled;
            if (!e.envelope.body_file().empty()) ::unlink((dir_ + "/" + e.envelope.body_file()).c_str());
            entries_.erase(it);
          }
        }
      }
    }
    pos += kHeaderSize + length;
  }
  seg.size = std::min<uint64_t>(pos, data.size());
  return true;
}

Spool::Segment* Spool::segment(uint64_t seq) {
  for (auto& s : segments_) {
    if (s.seq == seq) return &s;
  }
  return nullptr;
}

bool Spool::open_new_segment(std::string* error) {
  uint64_t seq = segments_.empty() ? 1 : segments_.back().seq + 1;
  Segment seg;
  seg.seq = seq;
  seg.fd = ::open(segment_path(seq).c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (seg.fd < 0) {
    *error = "cannot create " + segment_path(seq) + ": " + std::strerror(errno);
    return false;
  }
  if (!fsync_dir(dir_)) {
    *error = "cannot sync " + dir_ + ": " + std::strerror(errno);
    ::close(seg.fd);
    return false;
  }
  segments_.push_back(seg);
  return true;
}

void Spool::retire_segments() {
  // Never the active segment; only from the oldest end, so RESULT records outlive what they settle.
  while (segments_.size() > 1 && segments_.front().unsettled == 0) {
    Segment& s = segments_.front();
    ::close(s.fd);
    ::unlink(segment_path(s.seq).c_str());
    segments_.pop_front();
  }
}

std::string Spool::new_queue_id() {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%013" PRIX64 "%02X%04X", static_cast<uint64_t>(us), worker_ & 0xff, qid_counter_++ & 0xffff);
  return buf;
}

std::unique_ptr<smtp::BodySink> Spool::open_body(const std::string& queue_id) {
  return std::make_unique<SpoolBody>(dir_ + "/data/" + queue_id, options_.memory_body_limit);
}

bool Spool::has_room() {
  if (options_.min_free_bytes == 0) return true;
  int64_t now = now_ms();
  if (room_checked_ms_ < 0 || now - room_checked_ms_ >= 1000) {
    struct statvfs vfs{};
    if (::statvfs(dir_.c_str(), &vfs) == 0) {
      room_ = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize >= options_.min_free_bytes;
    }
    room_checked_ms_ = now;
  }
  return room_;
}

void Spool::stage(smtp::ServerSession::Message message, CommitCallback done) {
  staged_.push_back(Staged{std::move(message), std::move(done)});
}

int Spool::append_record(uint32_t type, const std::string& head, std::string_view body) {
  Segment& seg = segments_.back();
  char hdr[kHeaderSize];
  uint32_t crc = crc32c(0, head.data(), head.size());
  crc = crc32c(crc, body.data(), body.size());
  put32(hdr, kMagic);
  put32(hdr + 4, type);
  put32(hdr + 8, static_cast<uint32_t>(head.size() + body.size()));
  put32(hdr + 12, crc);
  iovec iov[3] = {{hdr, kHeaderSize}, {const_cast<char*>(head.data()), head.size()}, {const_cast<char*>(body.data()), body.size()}};
  size_t total = kHeaderSize + head.size() + body.size();
  size_t done = 0;
  int idx = 0;
  while (done < total) {
    ssize_t n = ::writev(seg.fd, iov + idx, 3 - idx);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      if (::ftruncate(seg.fd, static_cast<off_t>(seg.size)) != 0) log::error("spool.truncate_failed").kv("errno", err);
      return err;
    }
    done += static_cast<size_t>(n);
    size_t left = static_cast<size_t>(n);
    while (idx < 3 && left >= iov[idx].iov_len) {
      left -= iov[idx].iov_len;
      ++idx;
    }
    if (idx < 3) {
      iov[idx].iov_base = static_cast<char*>(iov[idx].iov_base) + left;
      iov[idx].iov_len -= left;
    }
  }
  seg.size += total;
  return 0;
}

void Spool::commit_staged() {
  if (staged_.empty()) return;
  std::vector<Staged> batch;
  batch.swap(staged_);
  std::string err_text;
  if (segments_.back().size >= options_.segment_size && !open_new_segment(&err_text)) {
    log::error("spool.rotate_failed").kv("reason", err_text);
  }
  Segment& seg = segments_.back();
  const uint64_t batch_start = seg.size;
  struct Written {
    size_t index;
    std::unique_ptr<SpoolEntry> entry;
  };
  std::vector<Written> written;
  std::vector<smtp::CommitStatus> status(batch.size(), smtp::CommitStatus::kOk);
  bool spilled_any = false;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();

  for (size_t i = 0; i < batch.size(); ++i) {
    auto* body = dynamic_cast<SpoolBody*>(batch[i].message.body.get());
    const smtp::Envelope& env = batch[i].message.envelope;
    int err = body == nullptr ? EINVAL : body->finish();
    if (err != 0) {
      status[i] = (err == ENOSPC || err == EDQUOT) ? smtp::CommitStatus::kNoSpace : smtp::CommitStatus::kError;
      log::error("spool.body_write_failed").kv("qid", env.queue_id).kv("error", std::strerror(err));
      continue;
    }
    auto e = std::make_unique<SpoolEntry>();
    auto& pe = e->envelope;
    pe.set_queue_id(env.queue_id);
    pe.set_mail_from(env.mail_from);
    for (const auto& r : env.recipients) {
      auto* pr = pe.add_recipients();
      pr->set_address(r.address);
      pr->set_notify(r.notify);
      pr->set_orcpt(r.orcpt);
    }
    pe.set_body_type(to_proto(env.body));
    pe.set_smtputf8(env.smtputf8);
    pe.set_ret(to_proto(env.ret));
    pe.set_envid(env.envid);
    pe.set_received_at_us(us);
    pe.set_client_address(env.client_address);
    pe.set_helo(env.helo);
    pe.set_listener(env.listener);
    pe.set_outbound(env.outbound);
    pe.set_tlsrpt_exempt(env.tlsrpt_exempt);
    pe.set_requiretls(env.requiretls);
    pe.set_tls_required_no(env.tls_required_no);
    if (env.tls.active) {
      pe.mutable_tls()->set_version(env.tls.version);
      pe.mutable_tls()->set_cipher(env.tls.cipher);
      pe.mutable_tls()->set_bits(static_cast<uint32_t>(env.tls.bits));
    }
    pe.set_size(env.size);
    std::string_view inline_body;
    if (body->spilled()) {
      pe.set_body_file("data/" + env.queue_id);
      spilled_any = true;
    } else {
      inline_body = body->memory();
    }
    std::string head(4, '\0');
    std::string env_bytes = pe.SerializeAsString();
    put32(head.data(), static_cast<uint32_t>(env_bytes.size()));
    head += env_bytes;
    uint64_t record_start = seg.size;
    err = append_record(kTypeMessage, head, inline_body);
    if (err != 0) {
      status[i] = (err == ENOSPC || err == EDQUOT) ? smtp::CommitStatus::kNoSpace : smtp::CommitStatus::kError;
      log::error("spool.write_failed").kv("qid", env.queue_id).kv("error", std::strerror(err));
      continue;
    }
    e->segment = seg.seq;
    e->body_offset = record_start + kHeaderSize + head.size();
    e->recipients.assign(env.recipients.size(), RecipientState::kPending);
    written.push_back(Written{i, std::move(e)});
  }

  // One flush for the whole batch: the new body files' directory entries, then the log.
  bool synced = true;
  if (spilled_any && !fsync_dir(dir_ + "/data")) synced = false;
  if (!written.empty() || results_dirty_) {
    if (::fdatasync(seg.fd) != 0) synced = false;
  }
  if (!synced) {
    int err = errno;
    log::error("spool.sync_failed").kv("error", std::strerror(err));
    // Nothing of this batch may be acknowledged; take it back out of the log.
    if (::ftruncate(seg.fd, static_cast<off_t>(batch_start)) == 0) seg.size = batch_start;
    for (auto& w : written) status[w.index] = smtp::CommitStatus::kError;
    written.clear();
  }
  results_dirty_ = false;

  for (auto& w : written) {
    SpoolEntry* raw = w.entry.get();
    ++seg.unsettled;
    auto* body = dynamic_cast<SpoolBody*>(batch[w.index].message.body.get());
    if (body != nullptr) body->keep();
    entries_[raw->envelope.queue_id()] = std::move(w.entry);
    if (on_ready_) on_ready_(raw);
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i].message.body.reset();  // deletes a spilled file that was not committed
    batch[i].done(status[i]);
  }
}

void Spool::set_ready_callback(ReadyCallback cb) {
  on_ready_ = std::move(cb);
  for (SpoolEntry* e : recovered_) on_ready_(e);
  recovered_.clear();
}

bool Spool::read_body(const SpoolEntry& entry, uint64_t offset, size_t length, std::string& out) {
  out.clear();
  uint64_t body_size = entry.envelope.size();
  if (offset >= body_size) return true;
  length = static_cast<size_t>(std::min<uint64_t>(length, body_size - offset));
  out.resize(length);
  int fd = -1;
  bool own = false;
  uint64_t base = 0;
  if (!entry.envelope.body_file().empty()) {
    fd = ::open((dir_ + "/" + entry.envelope.body_file()).c_str(), O_RDONLY | O_CLOEXEC);
    own = true;
  } else if (Segment* s = segment(entry.segment)) {
    fd = s->fd;
    base = entry.body_offset;
  }
  if (fd < 0) return false;
  size_t got = 0;
  bool ok = true;
  while (got < length) {
    ssize_t n = ::pread(fd, out.data() + got, length - got, static_cast<off_t>(base + offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    got += static_cast<size_t>(n);
  }
  if (own) ::close(fd);
  return ok;
}

void Spool::settle(SpoolEntry* entry, const std::vector<mxedge::spool::v1::RecipientResult>& results) {
  if (results.empty()) return;
  mxedge::spool::v1::DeliveryResult r;
  r.set_queue_id(entry->envelope.queue_id());
  for (const auto& rr : results) {
    *r.add_results() = rr;
    if (rr.index() < entry->recipients.size())
      entry->recipients[rr.index()] = rr.outcome() == mxedge::spool::v1::RECIPIENT_OUTCOME_DELIVERED ? RecipientState::kDelivered : RecipientState::kFailed;
  }
  int err = append_record(kTypeResult, r.SerializeAsString(), {});
  if (err != 0) {
    // Not fatal: the message stays pending on disk and is delivered again after a restart.
    log::warning("spool.result_write_failed").kv("qid", entry->envelope.queue_id()).kv("error", std::strerror(err));
  }
  results_dirty_ = true;
  bool settled = std::all_of(entry->recipients.begin(), entry->recipients.end(), [](RecipientState s) { return s != RecipientState::kPending; });
  if (!settled) return;
  if (Segment* s = segment(entry->segment)) --s->unsettled;
  if (!entry->envelope.body_file().empty()) ::unlink((dir_ + "/" + entry->envelope.body_file()).c_str());
  entries_.erase(entry->envelope.queue_id());
  retire_segments();
}

bool Spool::set_held(SpoolEntry* entry, bool held, std::string* error) {
  mxedge::spool::v1::HoldState h;
  h.set_queue_id(entry->envelope.queue_id());
  h.set_held(held);
  const int err = append_record(kTypeHold, h.SerializeAsString(), {});
  if (err != 0 || ::fdatasync(segments_.back().fd) != 0) {
    *error = std::string("cannot write the hold record: ") + std::strerror(err != 0 ? err : errno);
    return false;
  }
  entry->held = held;
  return true;
}

void Spool::flush() {
  if (!results_dirty_ || segments_.empty()) return;
  ::fdatasync(segments_.back().fd);
  results_dirty_ = false;
}

}  // namespace mxedge::spool
