// The data plane's end of the policy link: a thread that keeps a connection to the control plane's
// policy socket, applies every push to the PolicyStore (which answers Ack or Nack), and sends the
// destinations workers ask for. Workers never wait for it: request() queues and returns; the answer
// arrives as a Delta that lands in the store, and the worker finds it on its next look.
//
// While the control plane is unreachable it reconnects with back-off (0.2 s doubling to 5 s), logging
// the outage once; the store keeps serving unexpired policies meanwhile. Requests made while
// disconnected are sent after the next Hello.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "dataplane/policy/policy_store.h"

namespace mxedge::dataplane {

class PolicyClient {
 public:
  PolicyClient(PolicyStore& store, std::string socket_path, std::string id);
  ~PolicyClient();  // stops the thread

  void start();
  void stop();
  // Any thread; cheap: queues `domain` (deduplicated) and wakes the link thread.
  void request(const std::string& domain);
  bool connected() const { return connected_.load(std::memory_order_relaxed); }
  // Called on the link thread after each applied push (set before start()): workers waiting for a
  // policy look again at once instead of at their next poll.
  void set_on_change(std::function<void()> fn) { on_change_ = std::move(fn); }

 private:
  void run();
  bool session(int fd);  // returns when the connection ends; false when stopping
  bool send_all(int fd, const std::string& data);

  PolicyStore& store_;
  std::string path_;
  std::string id_;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> connected_{false};
  std::mutex mu_;
  std::set<std::string> pending_;
  std::thread thread_;
  std::function<void()> on_change_;
};

}  // namespace mxedge::dataplane
