// Fixture tables for bpf/xdp_smtp.bpf.c through BPF_PROG_TEST_RUN: each case is a description, a frame
// from the packet builder, the expected verdict and the one exclusive counter it must move (plus the
// allowlisted mark). Then truncation at every byte offset, and the malformed rules one by one.
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "tests/bpf/xdp_fixture.h"

namespace mxedge::bpftest {
namespace {

constexpr uint16_t kQ = 0x8100;   // 802.1Q C-tag
constexpr uint16_t kAd = 0x88a8;  // 802.1ad S-tag

struct Case {
  std::string name;  // the test's name: letters, digits, underscores
  std::string description;
  std::vector<uint8_t> frame;
  uint32_t verdict;  // XDP_*, or kSteered
  unsigned counter;  // the exclusive counter that moves
  bool allowlisted = false;
};

// gtest prints parameters on failure; the name is enough (the description is in the trace).
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

PacketBuilder v4(const char* src = kPeer4, const char* dst = kLocal4) { return PacketBuilder().ipv4(src, dst); }
PacketBuilder v6(const char* src = kPeer6, const char* dst = kLocal6) { return PacketBuilder().ipv6(src, dst); }

std::vector<uint8_t> set_byte(std::vector<uint8_t> frame, size_t at, uint8_t value) {
  frame.at(at) = value;
  return frame;
}

std::vector<uint8_t> cut(std::vector<uint8_t> frame, size_t size) {
  frame.resize(size);
  return frame;
}

std::vector<uint8_t> padded(std::vector<uint8_t> frame, size_t size) {
  frame.resize(size, 0);
  return frame;
}

constexpr unsigned kWorker0 = MXEDGE_CTR_STEERED_WORKER0;

std::vector<Case> cases() {
  const Frame syn4 = v4().tcp(40000, 25, kSyn).build();
  const Frame syn6 = v6().tcp(40000, 25, kSyn).build();
  std::vector<Case> t = {
      // SMTP, steered.
      {"v4_syn_25", "IPv4 SYN to port 25 on a local address", syn4.bytes, kSteered, kWorker0},
      {"v4_syn_465", "IPv4 SYN to 465", v4().tcp(40001, 465, kSyn).bytes(), kSteered, kWorker0},
      {"v4_ack_587", "IPv4 established (ACK+PSH, payload) to 587",
       v4().tcp(40002, 587, kAck | kPsh).payload(100).bytes(), kSteered, kWorker0},
      {"v4_local_prefix", "IPv4 to another address of the local /28", v4(kPeer4, "192.0.2.14").tcp(1, 25, kSyn).bytes(),
       kSteered, kWorker0},
      {"v4_padded", "IPv4 SYN padded to 60 bytes (Ethernet minimum): padding is not malformed", padded(syn4.bytes, 60),
       kSteered, kWorker0},
      {"v4_tcp_options", "IPv4 SYN with 20 bytes of TCP options", v4().tcp(40003, 25, kSyn, 20).bytes(), kSteered,
       kWorker0},
      {"v4_ip_options_4", "IPv4 with 4 bytes of options", v4().ipv4_options(4).tcp(40004, 25, kSyn).bytes(), kSteered,
       kWorker0},
      {"v4_ip_options_40", "IPv4 with 40 bytes of options (IHL 15)", v4().ipv4_options(40).tcp(40005, 25, kSyn).bytes(),
       kSteered, kWorker0},
      {"v6_syn_25", "IPv6 SYN to port 25", syn6.bytes, kSteered, kWorker0},
      {"v6_ack_465", "IPv6 established to 465", v6().tcp(40006, 465, kAck).payload(10).bytes(), kSteered, kWorker0},
      // VLANs.
      {"vlan_8021q", "802.1Q tagged IPv4 SYN", v4().vlan(kQ, 10).tcp(40010, 25, kSyn).bytes(), kSteered, kWorker0},
      {"vlan_qinq", "802.1ad + 802.1Q (QinQ) IPv4 SYN", v4().vlan(kAd, 100).vlan(kQ, 10).tcp(40011, 25, kSyn).bytes(),
       kSteered, kWorker0},
      {"vlan_double_q", "two 802.1Q tags", v4().vlan(kQ, 100).vlan(kQ, 10).tcp(40012, 25, kSyn).bytes(), kSteered,
       kWorker0},
      {"vlan_qinq_v6", "QinQ IPv6 SYN", v6().vlan(kAd, 7).vlan(kQ, 8).tcp(40013, 25, kSyn).bytes(), kSteered, kWorker0},
      {"vlan_three_tags", "three tags: beyond QinQ, not parsed, passed as not SMTP",
       v4().vlan(kAd, 1).vlan(kQ, 2).vlan(kQ, 3).tcp(40014, 25, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"vlan_blocked", "802.1Q tagged SYN from a blocklisted source",
       PacketBuilder().vlan(kQ, 10).ipv4(kBlocked4, kLocal4).tcp(40015, 25, kSyn).bytes(), XDP_DROP,
       MXEDGE_CTR_DROP_BLOCKLIST},
      // IPv6 extension headers.
      {"v6_hbh", "IPv6 hop-by-hop options then TCP", v6().ipv6_ext(IPPROTO_HOPOPTS, 8).tcp(40020, 25, kSyn).bytes(),
       kSteered, kWorker0},
      {"v6_chain", "IPv6 HBH, routing, destination options, AH, then TCP",
       v6().ipv6_ext(IPPROTO_HOPOPTS, 16)
           .ipv6_ext(IPPROTO_ROUTING, 24)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .ipv6_ext(IPPROTO_AH, 24)
           .tcp(40021, 25, kSyn)
           .bytes(),
       kSteered, kWorker0},
      {"v6_eight_ext", "IPv6 with 8 extension headers (the most we skip)",
       v6().ipv6_ext(IPPROTO_HOPOPTS, 8)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .ipv6_ext(IPPROTO_ROUTING, 8)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .ipv6_ext(IPPROTO_ROUTING, 8)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .ipv6_ext(IPPROTO_AH, 12)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .tcp(40022, 25, kSyn)
           .bytes(),
       kSteered, kWorker0},
      {"v6_nine_ext", "IPv6 with 9 extension headers: malformed",
       v6().ipv6_ext(IPPROTO_HOPOPTS, 8)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .ipv6_ext(IPPROTO_ROUTING, 8)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .ipv6_ext(IPPROTO_ROUTING, 8)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .ipv6_ext(IPPROTO_AH, 12)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .tcp(40023, 25, kSyn)
           .bytes(),
       XDP_DROP, MXEDGE_CTR_MALFORMED},
      {"v6_hbh_not_first", "IPv6 hop-by-hop after destination options: malformed (RFC 8200 4.1)",
       v6().ipv6_ext(IPPROTO_DSTOPTS, 8).ipv6_ext(IPPROTO_HOPOPTS, 8).tcp(40024, 25, kSyn).bytes(), XDP_DROP,
       MXEDGE_CTR_MALFORMED},
      {"v6_ext_blocked", "IPv6 with extension headers from a blocklisted source",
       v6(kBlocked6).ipv6_ext(IPPROTO_DSTOPTS, 40).tcp(40025, 25, kSyn).bytes(), XDP_DROP, MXEDGE_CTR_DROP_BLOCKLIST},
      {"v6_esp", "IPv6 ESP: cannot see inside, not SMTP", v6().protocol(50).payload(40).bytes(), XDP_PASS,
       MXEDGE_CTR_PASS_NOT_SMTP},
      {"v6_no_next", "IPv6 no next header", v6().protocol(59).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"v6_dstopts_udp", "IPv6 destination options then UDP to 25",
       v6().ipv6_ext(IPPROTO_DSTOPTS, 8).udp(5000, 25).payload(8).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      // Not SMTP.
      {"v4_port_80", "IPv4 TCP to port 80", v4().tcp(40030, 80, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"v4_from_25", "IPv4 TCP from port 25 (our outbound connection's replies)",
       v4().tcp(25, 40031, kSyn | kAck).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"v4_port_0", "IPv4 TCP to port 0 (unused config slots hold 0)", v4().tcp(40032, 0, kSyn).bytes(), XDP_PASS,
       MXEDGE_CTR_PASS_NOT_SMTP},
      {"v4_udp_25", "IPv4 UDP to port 25", v4().udp(5000, 25).payload(20).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"v4_icmp", "IPv4 ICMP", v4().protocol(IPPROTO_ICMP).payload(8).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"v6_icmp", "ICMPv6", v6().protocol(IPPROTO_ICMPV6).payload(8).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"arp", "ARP frame", PacketBuilder().ethertype(0x0806).payload(28).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"lldp_empty", "non-IP frame with no payload at all", PacketBuilder().ethertype(0x88cc).bytes(), XDP_PASS,
       MXEDGE_CTR_PASS_NOT_SMTP},
      {"v4_not_local", "IPv4 SYN to 25 on an address that is not ours",
       v4(kPeer4, kOther4).tcp(40033, 25, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"v6_not_local", "IPv6 SYN to 25 on an address that is not ours",
       v6(kPeer6, kOther6).tcp(40034, 25, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"blocked_not_smtp", "blocklisted source to port 80: the lists only guard SMTP",
       v4(kBlocked4).tcp(40035, 80, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      // Lists.
      {"v4_blocked", "IPv4 SYN from a blocklisted /24", v4(kBlocked4).tcp(40040, 25, kSyn).bytes(), XDP_DROP,
       MXEDGE_CTR_DROP_BLOCKLIST},
      {"v4_blocked_established", "IPv4 ACK from a blocklisted source (established flows too)",
       v4(kBlocked4).tcp(40041, 587, kAck).payload(5).bytes(), XDP_DROP, MXEDGE_CTR_DROP_BLOCKLIST},
      {"v4_allowed", "IPv4 from an allowlisted host inside the blocklisted /24: allow wins",
       v4(kAllowed4).tcp(40042, 25, kSyn).bytes(), kSteered, kWorker0, true},
      {"v6_blocked", "IPv6 SYN from a blocklisted /48", v6(kBlocked6).tcp(40043, 25, kSyn).bytes(), XDP_DROP,
       MXEDGE_CTR_DROP_BLOCKLIST},
      {"v6_allowed", "IPv6 from an allowlisted /128 inside the blocklisted /48: allow wins",
       v6(kAllowed6).tcp(40044, 465, kAck).bytes(), kSteered, kWorker0, true},
      {"v4_ip_options_blocked", "IPv4 with options from a blocklisted source",
       v4(kBlocked4).ipv4_options(12).tcp(40045, 25, kSyn).bytes(), XDP_DROP, MXEDGE_CTR_DROP_BLOCKLIST},
      // Fragments.
      {"v4_first_fragment", "IPv4 first fragment (MF, offset 0) with the whole TCP header: classified",
       v4().tcp(40050, 25, kAck).payload(200).fragment(0, true, 96).bytes(), kSteered, kWorker0},
      {"v4_first_fragment_blocked", "IPv4 first fragment from a blocklisted source",
       v4(kBlocked4).tcp(40051, 25, kAck).payload(200).fragment(0, true, 96).bytes(), XDP_DROP,
       MXEDGE_CTR_DROP_BLOCKLIST},
      {"v4_later_fragment", "IPv4 non-first TCP fragment: no TCP header, passed and counted",
       v4().tcp(40052, 25, kAck).payload(200).fragment(96, false).bytes(), XDP_PASS, MXEDGE_CTR_PASS_FRAGMENT},
      {"v4_later_fragment_blocked", "IPv4 non-first fragment from a blocklisted source: still passed",
       v4(kBlocked4).tcp(40053, 25, kAck).payload(200).fragment(96, true, 48).bytes(), XDP_PASS,
       MXEDGE_CTR_PASS_FRAGMENT},
      {"v4_later_fragment_udp", "IPv4 non-first UDP fragment: not SMTP",
       v4().udp(5000, 53).payload(200).fragment(104, false).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"v4_tiny_first_fragment", "IPv4 first fragment with 8 bytes of TCP header (RFC 1858): malformed",
       v4().tcp(40054, 25, kSyn).payload(100).fragment(0, true, 8).bytes(), XDP_DROP, MXEDGE_CTR_MALFORMED},
      {"v6_first_fragment", "IPv6 first fragment with the TCP header",
       v6().tcp(40055, 25, kAck).payload(200).fragment(0, true, 96).bytes(), kSteered, kWorker0},
      {"v6_first_fragment_dstopts", "IPv6 first fragment, destination options after the fragment header",
       v6().ipv6_ext(IPPROTO_HOPOPTS, 8)
           .fragment(0, true, 104)
           .ipv6_ext(IPPROTO_DSTOPTS, 8)
           .tcp(40056, 25, kAck)
           .payload(200)
           .bytes(),
       kSteered, kWorker0},
      {"v6_atomic_fragment", "IPv6 atomic fragment (offset 0, M clear, RFC 6946): a whole packet",
       v6().fragment(0, false).tcp(40057, 25, kSyn).bytes(), kSteered, kWorker0},
      {"v6_later_fragment", "IPv6 non-first TCP fragment",
       v6().tcp(40058, 25, kAck).payload(200).fragment(96, false).bytes(), XDP_PASS, MXEDGE_CTR_PASS_FRAGMENT},
      {"v6_later_fragment_udp", "IPv6 non-first UDP fragment: not SMTP",
       v6().udp(5000, 53).payload(200).fragment(96, true, 64).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP},
      {"v6_tiny_first_fragment", "IPv6 first fragment without the whole TCP header (RFC 7112): malformed",
       v6().tcp(40059, 25, kSyn).payload(100).fragment(0, true, 8).bytes(), XDP_DROP, MXEDGE_CTR_MALFORMED},
  };

  // Malformed headers, one rule each (offsets: 14 Ethernet, then IPv4 20 / IPv6 40, then TCP).
  const size_t l3 = 14;
  const size_t tcp4 = syn4.l4;
  const size_t tcp6 = syn6.l4;
  auto add = [&](std::string name, std::string description, std::vector<uint8_t> frame) {
    t.push_back({std::move(name), std::move(description), std::move(frame), XDP_DROP, MXEDGE_CTR_MALFORMED});
  };
  add("short_ethernet", "13 bytes: no room for the Ethernet header", cut(syn4.bytes, 13));
  add("empty_frame", "a frame of 0 bytes", {});
  add("vlan_cut", "frame ends inside the 802.1Q tag", cut(v4().vlan(kQ, 1).tcp(1, 25, kSyn).bytes(), 16));
  add("v4_version", "EtherType IPv4, version 6 in the header", set_byte(syn4.bytes, l3, 0x65));
  add("v4_ihl_4", "IPv4 IHL 4 (16 bytes)", set_byte(syn4.bytes, l3, 0x44));
  add("v4_total_below_ihl", "IPv4 total length 16 < header length",
      set_byte(set_byte(syn4.bytes, l3 + 2, 0), l3 + 3, 16));
  add("v4_total_beyond_frame", "IPv4 total length beyond the frame", set_byte(syn4.bytes, l3 + 3, 41));
  add("v4_total_no_tcp", "IPv4 total length 30: only 10 bytes of TCP header",
      set_byte(set_byte(syn4.bytes, l3 + 2, 0), l3 + 3, 30));
  add("v4_ihl_beyond_frame", "IPv4 IHL 15 with a 20-byte header", set_byte(syn4.bytes, l3, 0x4f));
  add("v4_doff_4", "TCP data offset 4 (16 bytes)", set_byte(syn4.bytes, tcp4 + 12, 0x40));
  add("v4_doff_beyond", "TCP data offset 15 in a 20-byte segment", set_byte(syn4.bytes, tcp4 + 12, 0xf0));
  add("v4_udp_truncated", "IPv4 UDP datagram cut short (any protocol: the IP layer is checked)",
      cut(v4().udp(5000, 53).payload(40).bytes(), 60));
  add("v6_version", "EtherType IPv6, version 4 in the header", set_byte(syn6.bytes, l3, 0x40));
  add("v6_payload_beyond_frame", "IPv6 payload length beyond the frame", set_byte(syn6.bytes, l3 + 5, 21));
  add("v6_payload_no_tcp", "IPv6 payload length 12: part of the TCP header", set_byte(syn6.bytes, l3 + 5, 12));
  add("v6_doff_4", "IPv6, TCP data offset 4", set_byte(syn6.bytes, tcp6 + 12, 0x40));
  add("v6_ext_beyond_payload", "IPv6 extension header longer than the payload",
      set_byte(v6().ipv6_ext(IPPROTO_DSTOPTS, 8).tcp(1, 25, kSyn).bytes(), l3 + 40 + 1, 200));
  return t;
}

class XdpTableTest : public XdpFixture, public ::testing::WithParamInterface<Case> {};

TEST_P(XdpTableTest, VerdictAndCounter) {
  const Case& c = GetParam();
  SCOPED_TRACE(c.description);
  expect(c.frame, c.verdict, c.counter, c.allowlisted);
}

INSTANTIATE_TEST_SUITE_P(Cases, XdpTableTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& p) { return p.param.name; });

// Every strict prefix of a frame whose headers fill it exactly is malformed: the frame ends inside a
// header, or before the end the IP header announces. Cut at every byte offset, from 0.
class XdpTruncationTest : public XdpFixture {};

TEST_F(XdpTruncationTest, EveryPrefixIsMalformedAndDropped) {
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> frames = {
      {"IPv4 SYN", v4().tcp(40000, 25, kSyn).bytes()},
      {"QinQ IPv4 with options, TCP options, payload",
       v4().vlan(kAd, 1).vlan(kQ, 2).ipv4_options(8).tcp(40001, 587, kAck | kPsh, 12).payload(16).bytes()},
      {"802.1Q IPv6 with HBH/routing/dstopts/AH", v6().vlan(kQ, 3)
                                                      .ipv6_ext(IPPROTO_HOPOPTS, 8)
                                                      .ipv6_ext(IPPROTO_ROUTING, 16)
                                                      .ipv6_ext(IPPROTO_DSTOPTS, 8)
                                                      .ipv6_ext(IPPROTO_AH, 16)
                                                      .tcp(40002, 25, kSyn, 8)
                                                      .bytes()},
      {"IPv6 first fragment", v6().tcp(40003, 25, kAck).payload(64).fragment(0, true, 48).bytes()},
      {"IPv4 non-first fragment", v4().tcp(40004, 25, kAck).payload(64).fragment(24, false).bytes()},
      {"IPv4 UDP", v4().udp(5000, 53).payload(12).bytes()},
      {"IPv6 ICMPv6", v6().protocol(IPPROTO_ICMPV6).payload(8).bytes()},
      {"blocklisted IPv4", v4(kBlocked4).tcp(40005, 25, kSyn).bytes()},
  };
  for (const auto& [what, frame] : frames) {
    SCOPED_TRACE(what);
    for (size_t len = 0; len < frame.size(); ++len) {
      SCOPED_TRACE("cut at " + std::to_string(len) + " of " + std::to_string(frame.size()));
      std::vector<uint8_t> prefix(frame.begin(), frame.begin() + static_cast<long>(len));
      expect(prefix, XDP_DROP, MXEDGE_CTR_MALFORMED);
      if (HasFailure()) return;  // one cut's failure is enough to read
    }
  }
}

// A frame that is not IP cannot be malformed in our sense: any cut of it that keeps the Ethernet
// header passes untouched.
TEST_F(XdpTruncationTest, NonIpPrefixesPass) {
  std::vector<uint8_t> arp = PacketBuilder().ethertype(0x0806).payload(28).bytes();
  for (size_t len = 14; len < arp.size(); ++len) {
    expect(cut(arp, len), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);
  }
}

// The table's config with steering on all CPUs, for the steering tests.
class XdpSteeringTest : public XdpFixture {
 protected:
  xdp::XdpConfig config() override {
    xdp::XdpConfig c = XdpFixture::config();
    c.worker_cpus.clear();
    for (unsigned cpu = 0; cpu < possible_cpus(); ++cpu) c.worker_cpus.push_back(cpu);
    return c;
  }

  // The worker a frame was steered to (by the counter that moved), checking the verdict on the way.
  int steered_worker(const std::vector<uint8_t>& frame) {
    xdp::XdpCounters before = counters();
    uint32_t verdict = run(frame);
    xdp::XdpCounters after = counters();
    for (unsigned w = 0; w < prog_.config().worker_count; ++w) {
      if (after.steered(w) != before.steered(w)) {
        EXPECT_EQ(after.steered(w) - before.steered(w), 1u);
        EXPECT_EQ(verdict, steered_verdict(prog_.config().worker_cpus[w])) << action_name(verdict);
        return static_cast<int>(w);
      }
    }
    ADD_FAILURE() << "not steered: " << action_name(verdict);
    return -1;
  }
};

TEST_F(XdpSteeringTest, SameFlowSameWorkerWhateverThePacket) {
  for (uint16_t sport = 1000; sport < 1016; ++sport) {
    int worker = steered_worker(v4().tcp(sport, 25, kSyn).bytes());
    // Later packets of the flow: ACKs, data, FIN, with VLAN tags or options in between.
    EXPECT_EQ(steered_worker(v4().tcp(sport, 25, kAck).bytes()), worker);
    EXPECT_EQ(steered_worker(v4().tcp(sport, 25, kAck | kPsh).payload(500).bytes()), worker);
    EXPECT_EQ(steered_worker(v4().vlan(kQ, 5).ipv4_options(8).tcp(sport, 25, kAck | kFin, 12).bytes()), worker);
    int worker6 = steered_worker(v6().tcp(sport, 25, kSyn).bytes());
    EXPECT_EQ(steered_worker(v6().ipv6_ext(IPPROTO_DSTOPTS, 8).tcp(sport, 25, kAck).payload(9).bytes()), worker6);
  }
}

TEST_F(XdpSteeringTest, ManyFlowsSpreadOverAllWorkers) {
  const unsigned workers = prog_.config().worker_count;
  std::vector<unsigned> per_worker(workers, 0);
  const unsigned flows = 2000;
  for (unsigned i = 0; i < flows; ++i) {
    std::string src4 = "203.0.113." + std::to_string(i % 250 + 1);
    char src6[64];
    std::snprintf(src6, sizeof src6, "2001:db8:%x::%x", i % 7 + 2, i + 1);
    auto frame = (i % 2) ? v4(src4.c_str()).tcp(static_cast<uint16_t>(1024 + i * 7), 25, kSyn).bytes()
                         : v6(src6).tcp(static_cast<uint16_t>(1024 + i * 13), 587, kSyn).bytes();
    int w = steered_worker(frame);
    ASSERT_GE(w, 0);
    per_worker[static_cast<unsigned>(w)]++;
  }
  for (unsigned w = 0; w < workers; ++w) {
    // An even share is flows/workers; a hash that spreads at all gives each worker most of it.
    EXPECT_GT(per_worker[w], flows / workers * 8 / 10) << "worker " << w;
  }
}

TEST_F(XdpSteeringTest, SteeringOffPassesSmtp) {
  MXEDGE_ASSERT_OK(prog_.set_steering(false));
  expect(v4().tcp(1000, 25, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_SMTP);
  expect(v6().tcp(1000, 25, kAck).bytes(), XDP_PASS, MXEDGE_CTR_PASS_SMTP);
  // The lists still apply with steering off.
  expect(v4(kBlocked4).tcp(1000, 25, kSyn).bytes(), XDP_DROP, MXEDGE_CTR_DROP_BLOCKLIST);
  MXEDGE_ASSERT_OK(prog_.set_steering(true));
  EXPECT_GE(steered_worker(v4().tcp(1000, 25, kSyn).bytes()), 0);
}

TEST_F(XdpSteeringTest, NoWorkersPassesSmtp) {
  MXEDGE_ASSERT_OK(prog_.set_workers({}, 64));
  expect(v4().tcp(1000, 25, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_SMTP);
}

TEST_F(XdpSteeringTest, CpuWithoutCpumapEntryFallsBackToPass) {
  if (possible_cpus() < 2) GTEST_SKIP() << "needs a second CPU";
  // Find a flow steered to CPU 1 (not this thread's CPU), then remove CPU 1's queue behind the
  // loader's back: the redirect's fallback action (XDP_PASS) applies and is counted.
  std::vector<uint8_t> frame;
  for (uint16_t sport = 1000; frame.empty(); ++sport) {
    auto f = v4().tcp(sport, 25, kSyn).bytes();
    int w = steered_worker(f);
    ASSERT_GE(w, 0);
    if (prog_.config().worker_cpus[w] == 1) frame = f;
  }
  uint32_t cpu = 1;
  ASSERT_EQ(bpf_map_delete_elem(prog_.map_fd("worker_cpumap"), &cpu), 0);
  expect(frame, XDP_PASS, MXEDGE_CTR_PASS_NO_WORKER);
}

TEST_F(XdpSteeringTest, PortsAndLocalAddressesFollowTheApi) {
  const uint16_t ports[] = {2525};
  MXEDGE_ASSERT_OK(prog_.set_smtp_ports(ports));
  expect(v4().tcp(1000, 25, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);
  EXPECT_GE(steered_worker(v4().tcp(1000, 2525, kSyn).bytes()), 0);

  // Only an IPv4 address listed: IPv6 has no local address at all.
  const std::string local[] = {"192.0.2.50"};
  MXEDGE_ASSERT_OK(prog_.set_local_addresses(local));
  expect(v4().tcp(1000, 2525, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);
  EXPECT_GE(steered_worker(v4(kPeer4, "192.0.2.50").tcp(1000, 2525, kSyn).bytes()), 0);
  expect(v6().tcp(1000, 2525, kSyn).bytes(), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);

  // None listed: any destination is local.
  MXEDGE_ASSERT_OK(prog_.set_local_addresses({}));
  EXPECT_GE(steered_worker(v4(kPeer4, kOther4).tcp(1000, 2525, kSyn).bytes()), 0);
  EXPECT_GE(steered_worker(v6(kPeer6, kOther6).tcp(1000, 2525, kSyn).bytes()), 0);
}

}  // namespace
}  // namespace mxedge::bpftest

namespace mxedge::bpftest {
namespace {

// The source lists with nested prefixes, and local addresses inline and in the trie.
class XdpListsTest : public XdpFixture {
 protected:
  xdp::XdpConfig config() override {
    xdp::XdpConfig c = XdpFixture::config();
    c.allowlist.clear();
    c.blocklist.clear();
    return c;
  }
  void add(xdp::PrefixList list, const char* prefix) { MXEDGE_ASSERT_OK(prog_.add_prefix(list, prefix)); }
  void remove(xdp::PrefixList list, const char* prefix) { MXEDGE_ASSERT_OK(prog_.remove_prefix(list, prefix)); }
  void expect_dropped(const char* src) {
    SCOPED_TRACE(src);
    expect(frame(src), XDP_DROP, MXEDGE_CTR_DROP_BLOCKLIST);
  }
  void expect_rescued(const char* src) {  // blocklisted and allowlisted: allow wins
    SCOPED_TRACE(src);
    expect(frame(src), kSteered, MXEDGE_CTR_STEERED_WORKER0, true);
  }
  void expect_untouched(const char* src) {
    SCOPED_TRACE(src);
    expect(frame(src), kSteered, MXEDGE_CTR_STEERED_WORKER0, false);
  }
  static std::vector<uint8_t> frame(const char* src) {
    bool v6 = std::strchr(src, ':') != nullptr;
    PacketBuilder b;
    if (v6) {
      b.ipv6(src, kLocal6);
    } else {
      b.ipv4(src, kLocal4);
    }
    return b.tcp(40000, 25, kAck).bytes();
  }
  static constexpr auto kAllow = xdp::PrefixList::kAllow;
  static constexpr auto kBlock = xdp::PrefixList::kBlock;
};

TEST_F(XdpListsTest, AllowWinsHoweverThePrefixesNest) {
  add(kBlock, "198.51.0.0/16");
  expect_dropped("198.51.100.9");
  add(kAllow, "198.51.100.0/24");  // a shorter allow inside a block
  expect_rescued("198.51.100.9");
  expect_dropped("198.51.7.1");
  add(kBlock, "198.51.100.9/32");  // a longer block inside the allow: the allow still wins
  expect_rescued("198.51.100.9");
  remove(kAllow, "198.51.100.0/24");
  expect_dropped("198.51.100.9");
  remove(kBlock, "198.51.100.9/32");
  expect_dropped("198.51.100.9");
  add(kAllow, "198.51.0.0/16");  // the same prefix on both lists
  expect_rescued("198.51.100.9");
  remove(kAllow, "198.51.0.0/16");
  expect_dropped("198.51.100.9");
  remove(kBlock, "198.51.0.0/16");
  expect_untouched("198.51.100.9");
  add(kAllow, "0.0.0.0/0");  // an allowlist that holds everything: nothing is dropped
  add(kBlock, "198.51.100.0/24");
  expect_rescued("198.51.100.9");
  expect_untouched("203.0.113.1");

  add(kBlock, "2001:db8::/32");
  add(kAllow, "2001:db8:1::/48");
  add(kBlock, "2001:db8:1:2::/64");
  expect_rescued("2001:db8:1:2::5");
  expect_dropped("2001:db8:2::5");
  remove(kAllow, "2001:db8:1::/48");
  expect_dropped("2001:db8:1:2::5");
  EXPECT_EQ(prog_.remove_prefix(kAllow, "2001:db8:1::/48").err(), ENOENT);
  EXPECT_EQ(prog_.remove_prefix(kAllow, "2001:db8::/32").err(), ENOENT);  // listed, but on the other list
}

// Random adds and removes on nested prefixes; after each, random sources must get the verdict a
// brute-force reading of the two lists gives.
TEST_F(XdpListsTest, ListsMatchABruteForceModel) {
  std::mt19937 rng(12345);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<std::pair<xdp::PrefixList, xdp::IpPrefix>> listed;
  for (int op = 0; op < 300; ++op) {
    if (listed.empty() || pick(0, 2) != 0) {
      // A prefix of 10.0.0.0/8 with its length between 8 and 32, bits chosen from few values so
      // that prefixes nest and collide often.
      unsigned len = static_cast<unsigned>(pick(8, 32));
      uint32_t addr = 0x0a000000u | (static_cast<uint32_t>(pick(0, 3)) << 22) |
                      (static_cast<uint32_t>(pick(0, 3)) << 8) | static_cast<uint32_t>(pick(0, 3));
      xdp::IpPrefix p;
      p.length = 32;
      p.addr[0] = static_cast<uint8_t>(addr >> 24);
      p.addr[1] = static_cast<uint8_t>(addr >> 16);
      p.addr[2] = static_cast<uint8_t>(addr >> 8);
      p.addr[3] = static_cast<uint8_t>(addr);
      p = p.truncated(len);
      auto list = pick(0, 1) ? kAllow : kBlock;
      MXEDGE_ASSERT_OK(prog_.add_prefix(list, p.to_string()));
      if (std::find(listed.begin(), listed.end(), std::make_pair(list, p)) == listed.end())
        listed.emplace_back(list, p);
    } else {
      size_t i = static_cast<size_t>(pick(0, static_cast<int>(listed.size()) - 1));
      MXEDGE_ASSERT_OK(prog_.remove_prefix(listed[i].first, listed[i].second.to_string()));
      listed.erase(listed.begin() + static_cast<long>(i));
    }
    for (int probe = 0; probe < 8; ++probe) {
      uint32_t src = 0x0a000000u | (static_cast<uint32_t>(pick(0, 3)) << 22) |
                     (static_cast<uint32_t>(pick(0, 3)) << 8) | static_cast<uint32_t>(pick(0, 3));
      xdp::IpPrefix host;
      host.length = 32;
      for (int b = 0; b < 4; ++b) host.addr[static_cast<size_t>(b)] = static_cast<uint8_t>(src >> (24 - 8 * b));
      bool allowed = false, blocked = false;
      for (const auto& [list, p] : listed) {
        if (!p.contains(host)) continue;
        (list == kAllow ? allowed : blocked) = true;
      }
      std::string text = host.to_string();
      text.resize(text.find('/'));
      SCOPED_TRACE("op " + std::to_string(op) + ", source " + text);
      if (blocked && !allowed) {
        expect_dropped(text.c_str());
      } else if (blocked) {
        expect_rescued(text.c_str());
      } else {
        expect_untouched(text.c_str());
      }
      if (HasFailure()) return;
    }
  }
}

TEST_F(XdpListsTest, LocalAddressesInlineOrInTheTrie) {
  auto smtp_to = [](const char* dst) {
    PacketBuilder b;
    if (std::strchr(dst, ':')) {
      b.ipv6(kPeer6, dst);
    } else {
      b.ipv4(kPeer4, dst);
    }
    return b.tcp(40000, 25, kAck).bytes();
  };
  const uint32_t modes =
      MXEDGE_CFG_LOCAL_V4_ANY | MXEDGE_CFG_LOCAL_V6_ANY | MXEDGE_CFG_LOCAL_V4_LPM | MXEDGE_CFG_LOCAL_V6_LPM;
  // A few single addresses: inline.
  std::vector<std::string> local = {"192.0.2.1", "192.0.2.2", "2001:db8:1::1"};
  MXEDGE_ASSERT_OK(prog_.set_local_addresses(local));
  EXPECT_EQ(prog_.config().flags & modes, 0u);
  EXPECT_EQ(prog_.config().local_v4_count, 2u);
  EXPECT_EQ(prog_.config().local_v6_count, 1u);
  expect(smtp_to("192.0.2.2"), kSteered, MXEDGE_CTR_STEERED_WORKER0);
  expect(smtp_to("192.0.2.3"), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);
  expect(smtp_to("2001:db8:1::1"), kSteered, MXEDGE_CTR_STEERED_WORKER0);
  expect(smtp_to("2001:db8:1::2"), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);

  // More than fit inline, or a prefix: the trie.
  local.clear();
  for (int i = 1; i <= MXEDGE_MAX_INLINE_LOCAL_V4 + 1; ++i) local.push_back("192.0.2." + std::to_string(i));
  for (int i = 1; i <= MXEDGE_MAX_INLINE_LOCAL_V6 + 1; ++i) local.push_back("2001:db8:1::" + std::to_string(i));
  MXEDGE_ASSERT_OK(prog_.set_local_addresses(local));
  EXPECT_EQ(prog_.config().flags & modes, MXEDGE_CFG_LOCAL_V4_LPM | MXEDGE_CFG_LOCAL_V6_LPM);
  expect(smtp_to("192.0.2.9"), kSteered, MXEDGE_CTR_STEERED_WORKER0);
  expect(smtp_to("192.0.2.10"), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);
  expect(smtp_to("2001:db8:1::5"), kSteered, MXEDGE_CTR_STEERED_WORKER0);
  expect(smtp_to("2001:db8:1::6"), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);

  local = {"192.0.2.0/28", "2001:db8:1::1"};
  MXEDGE_ASSERT_OK(prog_.set_local_addresses(local));
  EXPECT_EQ(prog_.config().flags & modes, MXEDGE_CFG_LOCAL_V4_LPM);
  expect(smtp_to("192.0.2.15"), kSteered, MXEDGE_CTR_STEERED_WORKER0);
  expect(smtp_to("192.0.2.16"), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);
  std::vector<xdp::IpPrefix> listed;
  MXEDGE_ASSERT_OK(prog_.list_prefixes(xdp::PrefixList::kLocal, &listed));
  EXPECT_EQ(listed.size(), 2u);

  MXEDGE_ASSERT_OK(prog_.remove_prefix(xdp::PrefixList::kLocal, "192.0.2.0/28"));
  EXPECT_EQ(prog_.config().flags & modes, 0u);  // one IPv6 address left, inline; no IPv4 is local
  expect(smtp_to("192.0.2.1"), XDP_PASS, MXEDGE_CTR_PASS_NOT_SMTP);
}

}  // namespace
}  // namespace mxedge::bpftest
