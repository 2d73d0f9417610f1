// libbpf logging and bpffs helpers; see libbpf_support.h.
#include "dataplane/xdp/libbpf_support.h"

#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string_view>

#include "policy/log.h"

namespace mxedge::xdp {
namespace {

// The format attribute tells the compiler `format` is libbpf's printf format, checked at its source.
__attribute__((format(printf, 2, 0))) int print_to_log(enum libbpf_print_level level, const char* format,
                                                       va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  log::Level ours = level == LIBBPF_WARN ? log::Level::kWarning : log::Level::kDebug;
  if (!log::enabled(ours)) return 0;
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n <= 0) return 0;
  std::string text(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(text.data(), text.size(), format, args);
  text.resize(static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  log::Line(ours, "libbpf").kv("message", text);
  return n;
}

std::string parent_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

void route_libbpf_logs() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(print_to_log); });
}

bool on_bpffs(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC;
}

Status make_pin_dir(const std::string& dir) {
  if (dir.empty() || dir[0] != '/') return Status::error(EINVAL, "pin directory \"" + dir + "\" is not absolute");
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::error(ENOTDIR, "pin directory " + dir);
    if (!on_bpffs(dir)) {
      return Status::error(EOPNOTSUPP,
                           "pin directory " + dir + " is not on a bpf filesystem (mount -t bpf bpf " + dir + ")");
    }
    return Status();
  }
  if (errno != ENOENT) return Status::error(errno, "stat " + dir);
  std::string parent = parent_of(dir);
  if (parent == dir) return Status::error(ENOENT, "pin directory " + dir);
  if (auto s = make_pin_dir(parent); !s.ok()) return s;
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Status::error(errno, "mkdir " + dir);
  return Status();
}

Status mount_bpffs(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Status::error(errno, "mkdir " + dir);
  if (mount("bpf", dir.c_str(), "bpf", 0, "mode=0700") != 0) return Status::error(errno, "mount -t bpf bpf " + dir);
  return Status();
}

}  // namespace mxedge::xdp
