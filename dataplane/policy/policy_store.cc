#include "dataplane/policy/policy_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "dataplane/spool/crc32c.h"
#include "policy/policy_codec.h"

namespace mxedge::dataplane {
namespace {

namespace pb = mxedge::policy::v1;

// State file: magic, then little-endian u32 length and u32 CRC-32C of the serialized Snapshot, then it.
constexpr char kMagic[8] = {'M', 'X', 'P', 'O', 'L', 'I', 'C', '1'};
constexpr size_t kMaxStateBytes = 256u << 20;

std::string errno_text() { return std::strerror(errno); }

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

bool write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

std::shared_ptr<const policy::DestinationPolicy> PolicySnapshot::find(std::string_view domain, int64_t now) const {
  auto it = policies.find(domain);
  if (it == policies.end() || it->second->expires_at <= now) return nullptr;
  return it->second;
}

PolicyStore::PolicyStore(std::string state_file) : state_file_(std::move(state_file)) {
  current_.store(std::make_shared<const PolicySnapshot>(), std::memory_order_release);
}

bool PolicyStore::load(std::string* error) {
  if (state_file_.empty()) return true;
  const int fd = ::open(state_file_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return true;
    *error = "cannot open policy state " + state_file_ + ": " + errno_text();
    return false;
  }
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = "cannot read policy state " + state_file_ + ": " + errno_text();
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxStateBytes + 16) break;
  }
  ::close(fd);
  auto corrupt = [&](const std::string& why) {
    *error = "policy state " + state_file_ + " is unusable (" + why + "); starting without policies";
    return false;
  };
  if (data.size() < 16 || std::memcmp(data.data(), kMagic, sizeof kMagic) != 0) return corrupt("not a policy state file");
  const uint32_t len = get_u32(data.data() + 8);
  const uint32_t crc = get_u32(data.data() + 12);
  if (data.size() != 16 + static_cast<size_t>(len)) return corrupt("length mismatch: torn write");
  const std::string_view body(data.data() + 16, len);
  if (spool::crc32c(body) != crc) return corrupt("checksum mismatch");
  pb::Snapshot s;
  if (!s.ParseFromArray(body.data(), static_cast<int>(body.size()))) return corrupt("does not parse");
  auto next = std::make_shared<PolicySnapshot>();
  next->version = s.version();
  next->generated_at = s.generated_at();
  for (const auto& m : s.policies()) {
    std::string why;
    auto p = policy::from_proto(m, &why);
    if (!p) return corrupt(why);
    const std::string domain = p->domain;
    next->policies[domain] = std::make_shared<const policy::DestinationPolicy>(std::move(*p));
  }
  current_.store(std::move(next), std::memory_order_release);
  return true;
}

bool PolicyStore::persist(const PolicySnapshot& snap, std::string* error) {
  if (state_file_.empty()) return true;
  pb::Snapshot s;
  s.set_version(snap.version);
  s.set_generated_at(snap.generated_at);
  for (const auto& [domain, p] : snap.policies) policy::to_proto(*p, s.add_policies());
  std::string body;
  s.SerializeToString(&body);
  std::string file(kMagic, sizeof kMagic);
  put_u32(file, static_cast<uint32_t>(body.size()));
  put_u32(file, spool::crc32c(body));
  file += body;
  const std::string tmp = state_file_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = "cannot write " + tmp + ": " + errno_text();
    return false;
  }
  bool ok = write_all(fd, file) && ::fsync(fd) == 0;
  const std::string why = ok ? "" : errno_text();
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    *error = "cannot write " + tmp + ": " + why;
    return false;
  }
  if (::rename(tmp.c_str(), state_file_.c_str()) != 0) {
    *error = "cannot rename " + tmp + ": " + errno_text();
    ::unlink(tmp.c_str());
    return false;
  }
  const int dfd = ::open(dir_of(state_file_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

pb::ToControlplane PolicyStore::nack(uint64_t version, uint64_t nonce, std::string error, bool need_snapshot) {
  ++counters_.nacks;
  pb::ToControlplane out;
  pb::Nack* n = out.mutable_nack();
  n->set_version(version);
  n->set_nonce(nonce);
  n->set_error(std::move(error));
  n->set_need_snapshot(need_snapshot);
  return out;
}

pb::ToControlplane PolicyStore::apply(const pb::ToDataplane& message) {
  auto cur = current();
  std::shared_ptr<PolicySnapshot> next;
  uint64_t version = 0, nonce = 0;
  std::string error;
  if (message.has_snapshot()) {
    const pb::Snapshot& s = message.snapshot();
    version = s.version();
    nonce = s.nonce();
    next = std::make_shared<PolicySnapshot>();
    next->version = s.version();
    next->generated_at = s.generated_at();
    for (int i = 0; i < s.policies_size(); ++i) {
      auto p = policy::from_proto(s.policies(i), &error);
      if (!p) return nack(version, nonce, "snapshot refused: policies[" + std::to_string(i) + "]: " + error, false);
      const std::string domain = p->domain;
      if (!next->policies.emplace(domain, std::make_shared<const policy::DestinationPolicy>(std::move(*p))).second)
        return nack(version, nonce, "snapshot refused: " + domain + " appears twice", false);
    }
  } else if (message.has_delta()) {
    const pb::Delta& d = message.delta();
    version = d.version();
    nonce = d.nonce();
    if (d.base_version() != cur->version)
      return nack(version, nonce, "delta for version " + std::to_string(d.base_version()) + " but version " + std::to_string(cur->version) + " is held", true);
    if (d.version() <= d.base_version())
      return nack(version, nonce, "delta version " + std::to_string(d.version()) + " does not follow " + std::to_string(d.base_version()), true);
    next = std::make_shared<PolicySnapshot>(*cur);  // copies pointers, not policies
    next->version = d.version();
    for (const auto& r : d.removed()) next->policies.erase(r);
    for (int i = 0; i < d.upserts_size(); ++i) {
      auto p = policy::from_proto(d.upserts(i), &error);
      if (!p) return nack(version, nonce, "delta refused: upserts[" + std::to_string(i) + "]: " + error, false);
      const std::string domain = p->domain;
      next->policies[domain] = std::make_shared<const policy::DestinationPolicy>(std::move(*p));
    }
  } else {
    return nack(0, 0, "empty push message", false);
  }
  if (!persist(*next, &error)) {
    ++counters_.persist_failures;
    return nack(version, nonce, "not applied: " + error, false);
  }
  message.has_snapshot() ? ++counters_.snapshots : ++counters_.deltas;
  current_.store(std::move(next), std::memory_order_release);
  pb::ToControlplane out;
  out.mutable_ack()->set_version(version);
  out.mutable_ack()->set_nonce(nonce);
  return out;
}

}  // namespace mxedge::dataplane
