// Integration: the XDP program attached natively to the gateway side of a veth pair between two
// network namespaces this test creates (ip netns, names unique to this process) and always deletes
// (destructor, SIGINT/SIGTERM handler, and a sweep of namespaces left by dead runs of this test).
// A TCP listener on port 25 in the gateway namespace; clients in the peer namespace. Checks: a
// blocklisted source (IPv4 and IPv6) cannot complete a connect while a non-blocklisted one can, the
// counters moved, and the accepted connection was processed on the CPU its flow was steered to.
//
// Addresses (10.200.0.0/24, fd00:6d78::/64) exist only inside the two namespaces; nothing leaves them.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dataplane/xdp/xdp_program.h"
#include "tests/bpf/bpf_test_env.h"
#include "tests/bpf/expect_ok.h"

namespace mxedge::bpftest {
namespace {

constexpr const char* kPrefix = "mxbpf-";

int run(const std::string& command) {
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Names this process owns, kept where the signal handler can reach them without allocating.
char g_gw[64];
char g_peer[64];

void delete_namespaces_and_exit(int sig) {
  for (const char* name : {g_gw, g_peer}) {
    if (!name[0]) continue;
    pid_t pid = fork();
    if (pid == 0) {
      execlp("ip", "ip", "netns", "del", name, static_cast<char*>(nullptr));
      _exit(127);
    }
    if (pid > 0) waitpid(pid, nullptr, 0);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

// Namespaces named mxbpf-<role>-<pid> whose pid is gone: a run killed before it could clean up.
void sweep_stale_namespaces() {
  DIR* d = opendir("/run/netns");
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind(kPrefix, 0) != 0) continue;
    auto dash = name.find_last_of('-');
    pid_t pid = static_cast<pid_t>(std::atoi(name.c_str() + dash + 1));
    if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(name);
  }
  closedir(d);
  for (const auto& name : stale) run("ip netns del " + name);
}

class Lab {
 public:
  Lab() {
    sweep_stale_namespaces();
    std::string pid = std::to_string(getpid());
    gw_ = std::string(kPrefix) + "gw-" + pid;
    peer_ = std::string(kPrefix) + "peer-" + pid;
    gw_if_ = "mxg" + pid;
    peer_if_ = "mxp" + pid;
    std::snprintf(g_gw, sizeof g_gw, "%s", gw_.c_str());
    std::snprintf(g_peer, sizeof g_peer, "%s", peer_.c_str());
    signal(SIGINT, delete_namespaces_and_exit);
    signal(SIGTERM, delete_namespaces_and_exit);
    original_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  }
  ~Lab() {
    if (original_ >= 0) {
      setns(original_, CLONE_NEWNET);
      close(original_);
    }
    for (int fd : {gw_fd_, peer_fd_}) {
      if (fd >= 0) close(fd);
    }
    run("ip netns del " + gw_ + " 2>/dev/null");
    run("ip netns del " + peer_ + " 2>/dev/null");
    g_gw[0] = g_peer[0] = '\0';
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
  }
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  bool create() {
    const std::string g = "ip -n " + gw_ + " ", p = "ip -n " + peer_ + " ";
    const std::vector<std::string> steps = {
        "ip netns add " + gw_,
        "ip netns add " + peer_,
        "ip link add " + gw_if_ + " netns " + gw_ + " type veth peer name " + peer_if_ + " netns " + peer_,
        g + "link set lo up",
        p + "link set lo up",
        g + "addr add 10.200.0.1/24 dev " + gw_if_,
        g + "addr add fd00:6d78::1/64 dev " + gw_if_ + " nodad",
        p + "addr add 10.200.0.2/24 dev " + peer_if_,
        p + "addr add 10.200.0.3/24 dev " + peer_if_,
        p + "addr add fd00:6d78::2/64 dev " + peer_if_ + " nodad",
        p + "addr add fd00:6d78::3/64 dev " + peer_if_ + " nodad",
        g + "link set " + gw_if_ + " up",
        p + "link set " + peer_if_ + " up",
    };
    for (const auto& s : steps) {
      if (run(s) != 0) {
        ADD_FAILURE() << "failed: " << s;
        return false;
      }
    }
    gw_fd_ = open(("/run/netns/" + gw_).c_str(), O_RDONLY | O_CLOEXEC);
    peer_fd_ = open(("/run/netns/" + peer_).c_str(), O_RDONLY | O_CLOEXEC);
    if (gw_fd_ < 0 || peer_fd_ < 0 || original_ < 0) return false;
    // veth hands TCP segments over with a partial checksum (CHECKSUM_PARTIAL: "the NIC will fill
    // it in"). A frame that XDP redirects through a cpumap loses that state and reaches TCP with
    // an incomplete checksum, which TCP rejects. A real NIC's frames carry full checksums; make the
    // peer behave like one (what `ethtool -K <peer> tx off` does).
    if (!enter_peer() || !disable_tx_checksum(peer_if_)) {
      ADD_FAILURE() << "cannot turn off tx checksum offload on " << peer_if_;
      return false;
    }
    return true;
  }

  static bool disable_tx_checksum(const std::string& ifname) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    ethtool_value value{};
    value.cmd = ETHTOOL_STXCSUM;
    value.data = 0;
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname.c_str());
    ifr.ifr_data = reinterpret_cast<char*>(&value);
    bool ok = ioctl(fd, SIOCETHTOOL, &ifr) == 0;
    close(fd);
    return ok;
  }

  // This thread's sockets and interface lookups happen in the namespace entered last.
  bool enter_gateway() { return setns(gw_fd_, CLONE_NEWNET) == 0; }
  bool enter_peer() { return setns(peer_fd_, CLONE_NEWNET) == 0; }
  const std::string& gateway_interface() const { return gw_if_; }

 private:
  std::string gw_, peer_, gw_if_, peer_if_;
  int original_ = -1, gw_fd_ = -1, peer_fd_ = -1;
};

sockaddr_storage address(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  if (std::strchr(ip, ':')) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &a->sin6_addr);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, ip, &a->sin_addr);
  }
  return ss;
}

socklen_t length_of(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

int listener(const char* ip) {
  sockaddr_storage a = address(ip, 25);
  int fd = socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), length_of(a)) != 0 || listen(fd, 16) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// A non-blocking socket bound to `source`, created in the current (peer) namespace.
int client(const char* source) {
  sockaddr_storage a = address(source, 0);
  int fd = socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), length_of(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Starts a connect and waits up to `wait` for it to complete; true if it did.
bool connects(int fd, const char* destination, std::chrono::milliseconds wait) {
  sockaddr_storage a = address(destination, 25);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), length_of(a)) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, static_cast<int>(wait.count())) != 1) return false;
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err == 0;
}

// Accepts one pending connection; returns its SO_INCOMING_CPU, or -1 when none is pending.
int accept_one(int listen_fd) {
  pollfd p{listen_fd, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1) return -1;
  int fd = accept(listen_fd, nullptr, nullptr);
  if (fd < 0) return -1;
  int cpu = -1;
  socklen_t len = sizeof cpu;
  getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &len);
  close(fd);
  return cpu;
}

bool nothing_pending(int listen_fd) {
  pollfd p{listen_fd, POLLIN, 0};
  return poll(&p, 1, 0) == 0;
}

TEST(XdpNetnsTest, BlocklistedSourceCannotConnectOthersCanOnTheSteeredCpu) {
  Lab lab;
  ASSERT_TRUE(lab.create());
  ASSERT_TRUE(lab.enter_gateway());

  xdp::XdpConfig config = base_config();  // every CPU a worker, steering on
  config.interfaces = {lab.gateway_interface()};
  config.attach_mode = xdp::AttachMode::kNative;
  config.smtp_ports = {25};
  config.local_addresses = {"10.200.0.1", "fd00:6d78::1"};
  config.blocklist = {"10.200.0.3/32", "fd00:6d78::3/128"};
  config.syn_rate = 100;
  config.syn_burst = 20;
  xdp::XdpProgram prog;
  MXEDGE_ASSERT_OK(prog.start(config));
  ASSERT_TRUE(prog.attachments().at(0).native);

  int listen4 = listener("10.200.0.1");
  int listen6 = listener("fd00:6d78::1");
  ASSERT_GE(listen4, 0);
  ASSERT_GE(listen6, 0);

  struct Attempt {
    const char* source;
    const char* destination;
    int listen_fd;
    bool blocked;
  };
  const Attempt attempts[] = {
      {"10.200.0.2", "10.200.0.1", listen4, false},
      {"10.200.0.3", "10.200.0.1", listen4, true},
      {"fd00:6d78::2", "fd00:6d78::1", listen6, false},
      {"fd00:6d78::3", "fd00:6d78::1", listen6, true},
  };
  for (const auto& at : attempts) {
    SCOPED_TRACE(std::string(at.source) + " -> " + at.destination);
    ASSERT_TRUE(lab.enter_peer());
    int fd = client(at.source);
    ASSERT_TRUE(lab.enter_gateway());
    ASSERT_GE(fd, 0);

    xdp::XdpCounters before;
    MXEDGE_ASSERT_OK(prog.read_counters(&before));
    if (at.blocked) {
      // The SYN and its retransmission (after 1 s) are dropped before the stack sees them.
      EXPECT_FALSE(connects(fd, at.destination, std::chrono::milliseconds(2500)));
      close(fd);
      EXPECT_TRUE(nothing_pending(at.listen_fd));
      xdp::XdpCounters after;
      MXEDGE_ASSERT_OK(prog.read_counters(&after));
      EXPECT_GE(after.packets(MXEDGE_CTR_DROP_BLOCKLIST) - before.packets(MXEDGE_CTR_DROP_BLOCKLIST), 1u);
      EXPECT_EQ(after.steered_total(), before.steered_total());
      continue;
    }
    ASSERT_TRUE(connects(fd, at.destination, std::chrono::milliseconds(5000)));
    int incoming_cpu = accept_one(at.listen_fd);
    close(fd);
    xdp::XdpCounters after;
    MXEDGE_ASSERT_OK(prog.read_counters(&after));
    // Every packet of the flow went to one worker, and the kernel processed the connection on that
    // worker's CPU (what the SK_REUSEPORT program and the worker's accept check rely on).
    int worker = -1;
    for (unsigned w = 0; w < prog.config().worker_count; ++w) {
      if (after.steered(w) == before.steered(w)) continue;
      EXPECT_EQ(worker, -1) << "packets of one flow went to two workers";
      worker = static_cast<int>(w);
    }
    ASSERT_GE(worker, 0) << "no packet was steered";
    EXPECT_GE(after.steered(static_cast<unsigned>(worker)) - before.steered(static_cast<unsigned>(worker)), 2u)
        << "SYN and ACK at least";
    EXPECT_EQ(incoming_cpu, static_cast<int>(prog.config().worker_cpus[worker]));
    EXPECT_EQ(after.packets(MXEDGE_CTR_DROP_BLOCKLIST), before.packets(MXEDGE_CTR_DROP_BLOCKLIST));
  }

  xdp::XdpCounters total;
  MXEDGE_ASSERT_OK(prog.read_counters(&total));
  EXPECT_GE(total.packets(MXEDGE_CTR_DROP_BLOCKLIST), 4u);
  EXPECT_GE(total.packets(MXEDGE_CTR_PASS_NOT_SMTP), 1u);  // ARP / neighbour discovery, untouched
  EXPECT_EQ(total.packets(MXEDGE_CTR_MALFORMED), 0u);
  close(listen4);
  close(listen6);
  MXEDGE_EXPECT_OK(prog.detach_all());  // in the gateway namespace, where the interface is
}

}  // namespace
}  // namespace mxedge::bpftest
