// The result of a loader or map operation in dataplane/xdp: ok, or the errno of the call that failed
// with what was being done ("bpf_xdp_attach(eth0, native)"). The data plane logs it and decides; no
// exceptions cross this layer.
#pragma once

#include <cerrno>
#include <string>
#include <utility>

namespace mxedge::xdp {

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok

  // err: a positive errno; a negative one (as libbpf returns) is flipped; 0 (a failure that left no
  // errno) becomes EIO, so an error is never mistaken for success.
  static Status error(int err, std::string context) {
    int e = err < 0 ? -err : err;
    return Status(e == 0 ? EIO : e, std::move(context));
  }
  // For libbpf calls: ret >= 0 is success, ret < 0 is -errno.
  static Status from_libbpf(int ret, std::string context) {
    return ret >= 0 ? Status() : error(ret, std::move(context));
  }

  bool ok() const { return err_ == 0; }
  int err() const { return err_; }
  const std::string& context() const { return context_; }
  std::string to_string() const;  // "ok" or "<context>: <strerror> (errno N)"

 private:
  Status(int err, std::string context) : err_(err), context_(std::move(context)) {}
  int err_ = 0;
  std::string context_;
};

}  // namespace mxedge::xdp
