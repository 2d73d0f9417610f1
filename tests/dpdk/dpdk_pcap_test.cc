// pcap in -> pcap out through net_pcap: the DPDK fast path's burst loop on a real lcore, with a
// net_pcap "wire" port reading a capture and a net_pcap "kernel side" port (standing in for the TAP
// device) writing one capture per queue. Checks that every frame lands where the classifier says:
// dropped frames nowhere, passed frames and worker 0's on queue 0, worker 1's on queue 1, in order
// and unchanged; that frames from the kernel side leave by the wire port; and that the counters
// add up to the frames read.
#include <gtest/gtest.h>
#include <unistd.h>

#include <rte_bus_vdev.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "dataplane/dpdk/dpdk_fast_path.h"
#include "tests/bpf/bpf_test_env.h"
#include "tests/bpf/expect_ok.h"
#include "tests/bpf/frame_generator.h"
#include "tests/bpf/xdp_fixture.h"
#include "tests/dpdk/dpdk_test_env.h"

namespace mxedge::bpftest {
namespace {

using Frames = std::vector<std::vector<uint8_t>>;

void write_pcap(const std::string& path, const Frames& frames) {
  std::ofstream f(path, std::ios::binary);
  const uint32_t magic = 0xa1b2c3d4, snaplen = 65535, linktype = 1, zero = 0;
  const uint16_t major = 2, minor = 4;
  f.write(reinterpret_cast<const char*>(&magic), 4);
  f.write(reinterpret_cast<const char*>(&major), 2);
  f.write(reinterpret_cast<const char*>(&minor), 2);
  f.write(reinterpret_cast<const char*>(&zero), 4);
  f.write(reinterpret_cast<const char*>(&zero), 4);
  f.write(reinterpret_cast<const char*>(&snaplen), 4);
  f.write(reinterpret_cast<const char*>(&linktype), 4);
  uint32_t ts = 1;
  for (const auto& fr : frames) {
    const uint32_t len = static_cast<uint32_t>(fr.size());
    f.write(reinterpret_cast<const char*>(&ts), 4);
    f.write(reinterpret_cast<const char*>(&zero), 4);
    f.write(reinterpret_cast<const char*>(&len), 4);
    f.write(reinterpret_cast<const char*>(&len), 4);
    f.write(reinterpret_cast<const char*>(fr.data()), len);
    ++ts;
  }
}

Frames read_pcap(const std::string& path) {
  Frames out;
  std::ifstream f(path, std::ios::binary);
  char header[24];
  if (!f.read(header, 24)) return out;
  while (true) {
    uint32_t rec[4];
    if (!f.read(reinterpret_cast<char*>(rec), 16)) break;
    std::vector<uint8_t> fr(rec[2]);
    if (!f.read(reinterpret_cast<char*>(fr.data()), rec[2])) break;
    out.push_back(std::move(fr));
  }
  return out;
}

class PcapTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One fast-path lcore on the last CPU; the test thread is the main lcore elsewhere.
    ASSERT_TRUE(dpdktest::start_eal({possible_cpus() > 1 ? possible_cpus() - 1 : 0}).ok());
  }

  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("mxedge-pcap-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string path(const char* name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

xdp::XdpConfig classifier_config() {
  xdp::XdpConfig c = base_config();
  c.local_addresses = {"192.0.2.0/28", "2001:db8:1::1"};
  c.blocklist = {"198.51.100.0/24", "2001:db8:bad::/48"};
  c.allowlist = {"198.51.100.7", "2001:db8:bad::7/128"};
  c.worker_cpus = {0, possible_cpus() > 1 ? 1u : 0u};
  if (c.worker_cpus[0] == c.worker_cpus[1]) c.worker_cpus.pop_back();
  c.syn_rate = 0;  // no state: the verdict of a frame does not depend on the frames before it
  return c;
}

uint16_t port_of(const std::string& name) {
  uint16_t id = 0;
  EXPECT_EQ(rte_eth_dev_get_port_by_name(name.c_str(), &id), 0) << name;
  return id;
}

void start_port(uint16_t port, uint16_t queues, rte_mempool* pool) {
  rte_eth_conf conf{};
  ASSERT_EQ(rte_eth_dev_configure(port, queues, queues, &conf), 0);
  for (uint16_t q = 0; q < queues; ++q) {
    ASSERT_EQ(rte_eth_rx_queue_setup(port, q, 256, 0, nullptr, pool), 0);
    ASSERT_EQ(rte_eth_tx_queue_setup(port, q, 256, 0, nullptr), 0);
  }
  ASSERT_EQ(rte_eth_dev_start(port), 0);
}

TEST_F(PcapTest, FramesLandOnTheQueueTheClassifierNames) {
  // The corpus: random frames (SMTP from peers, blocked and allowed sources, other traffic) and
  // damaged copies; all at most 1514 bytes so each fits one mbuf.
  Generator gen(20261123);
  Frames in;
  while (in.size() < 3000) {
    Expectation want;
    auto f = gen.frame(&want);
    if (gen.uniform(0, 3) == 0) f = gen.mutate(f);
    if (f.size() < 14 || f.size() > 1514) continue;  // a capture holds whole Ethernet frames
    in.push_back(std::move(f));
  }
  const Frames kernel = {PacketBuilder().ipv4(kLocal4, kPeer4).tcp(25, 40000, kSyn | kAck).bytes(),
                         PacketBuilder().ipv6(kLocal6, kPeer6).tcp(25, 40001, kAck).payload(40).bytes()};
  write_pcap(path("wire_in.pcap"), in);
  write_pcap(path("kernel_in0.pcap"), kernel);
  write_pcap(path("kernel_in1.pcap"), {});

  dpdk::DpdkFastPath fp;
  dpdk::DpdkOptions options;
  options.lcores = 1;
  options.sizes.buckets_per_lcore = 1024;
  MXEDGE_ASSERT_OK(fp.open(options));
  const xdp::XdpConfig config = classifier_config();
  MXEDGE_ASSERT_OK(fp.apply(config));
  const unsigned workers = static_cast<unsigned>(config.worker_cpus.size());

  // What the classifier says about each frame (stateless config), from the test thread.
  std::vector<Frames> want_q(workers);
  uint64_t want_drops = 0;
  for (const auto& f : in) {
    mxedge_verdict v{};
    fp.classify(0, f.data(), static_cast<uint32_t>(f.size()), &v);
    if (v.action == MXEDGE_ACT_DROP) ++want_drops;
    else want_q[v.action == MXEDGE_ACT_STEER ? v.worker : 0].push_back(f);
  }
  ASSERT_GT(want_drops, 0u);
  ASSERT_GT(want_q.back().size(), 0u);

  const std::string tag = std::to_string(::getpid());
  const std::string wire = "net_pcap_wire" + tag, side = "net_pcap_kernel" + tag;
  ASSERT_EQ(rte_vdev_init(wire.c_str(), ("rx_pcap=" + path("wire_in.pcap") + ",tx_pcap=" + path("wire_out.pcap")).c_str()), 0);
  std::string side_args = "rx_pcap=" + path("kernel_in0.pcap") + ",tx_pcap=" + path("q0.pcap");
  if (workers > 1) side_args += ",rx_pcap=" + path("kernel_in1.pcap") + ",tx_pcap=" + path("q1.pcap");
  ASSERT_EQ(rte_vdev_init(side.c_str(), side_args.c_str()), 0);
  rte_mempool* pool = rte_pktmbuf_pool_create(("mxpcap" + tag).c_str(), 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  ASSERT_NE(pool, nullptr);
  const uint16_t wire_id = port_of(wire), side_id = port_of(side);
  start_port(wire_id, 1, pool);
  start_port(side_id, static_cast<uint16_t>(workers), pool);

  dpdk::DpdkFastPath::LcoreQueues q;
  q.wire_rx = {{wire_id, 0}};
  q.wire_tx = {{wire_id, 0}};
  std::vector<dpdk::DpdkFastPath::Queue> taps;
  for (unsigned w = 0; w < workers; ++w) taps.push_back({side_id, static_cast<uint16_t>(w)});
  q.tap = {taps};
  const unsigned lcore = possible_cpus() > 1 ? possible_cpus() - 1 : 0;
  MXEDGE_ASSERT_OK(fp.launch(std::vector<unsigned>{lcore}, {q}, 32));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    const auto s = fp.lcore_stats();
    if (s[0].rx_wire >= in.size() && s[0].rx_kernel >= kernel.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fp.stop();
  const auto stats = fp.lcore_stats();
  EXPECT_EQ(stats[0].rx_wire, in.size());
  EXPECT_EQ(stats[0].rx_kernel, kernel.size());
  EXPECT_EQ(stats[0].tap_tx_dropped, 0u);
  xdp::XdpCounters c;
  MXEDGE_ASSERT_OK(fp.read_counters(&c));
  EXPECT_EQ(c.all_packets(), in.size()) << "every frame read is counted exactly once";
  EXPECT_EQ(c.packets(MXEDGE_CTR_DROP_BLOCKLIST) + c.packets(MXEDGE_CTR_MALFORMED) + c.packets(MXEDGE_CTR_DROP_RATE_LIMIT), want_drops);
  // Closing the ports flushes the captures.
  rte_eth_dev_stop(wire_id);
  rte_eth_dev_stop(side_id);
  rte_eth_dev_close(wire_id);
  rte_eth_dev_close(side_id);
  rte_vdev_uninit(wire.c_str());
  rte_vdev_uninit(side.c_str());
  rte_mempool_free(pool);

  for (unsigned w = 0; w < workers; ++w) {
    const Frames got = read_pcap(path(w == 0 ? "q0.pcap" : "q1.pcap"));
    ASSERT_EQ(got.size(), want_q[w].size()) << "queue " << w;
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want_q[w][i]) << "queue " << w << " frame " << i;
    EXPECT_EQ(c.packets(MXEDGE_CTR_STEERED_WORKER0 + w) + (w == 0 ? c.packets(MXEDGE_CTR_PASS_NOT_SMTP) + c.packets(MXEDGE_CTR_PASS_FRAGMENT) : 0),
              want_q[w].size());
  }
  EXPECT_EQ(read_pcap(path("wire_out.pcap")), kernel) << "the kernel's frames leave by the wire port, unchanged";
}

}  // namespace
}  // namespace mxedge::bpftest
