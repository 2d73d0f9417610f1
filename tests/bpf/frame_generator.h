// The random frame generator of the classifier tests: random well-formed frames (VLAN tags, IPv4
// options, IPv6 extension chains, fragments, protocols, ports, flags, sources from the fixture's
// lists) with what the documented rules (bpf/parsing.h, bpf/classifier.h) say about each, and
// damaged copies. Used by xdp_random_test (BPF against the model) and tests/dpdk's differential test
// (BPF against the DPDK fast path).
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bpf/mxedge_abi.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/xdp_fixture.h"

namespace mxedge::bpftest {

inline constexpr unsigned kAnySteered = 1000;  // the model's "steered to some worker"

struct Expectation {
  std::set<unsigned> counters;  // acceptable exclusive counters (kAnySteered for any worker)
  int allowlisted = 0;          // 0 no, 1 yes
};

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  // A random well-formed frame and what the documented rules (bpf/parsing.h, xdp_smtp.bpf.c) say
  // about it.
  std::vector<uint8_t> frame(Expectation* want) {
    PacketBuilder b;
    unsigned tags = pick({70, 15, 10, 5});  // 0..3 VLAN tags
    for (unsigned i = 0; i < tags; ++i) {
      b.vlan(i == 0 && tags > 1 && coin() ? 0x88a8 : 0x8100, static_cast<uint16_t>(uniform(1, 4094)));
    }
    unsigned family = pick({45, 45, 10});  // IPv4, IPv6, not IP
    if (family == 2) {
      b.ethertype(coin() ? 0x0806 : 0x88cc).payload(uniform(0, 60));
      want->counters = {MXEDGE_CTR_PASS_NOT_SMTP};
      return b.bytes();
    }
    const bool v6 = family == 1;

    enum Src { kPeer, kBlocked, kAllowed } src = static_cast<Src>(pick({60, 25, 15}));
    const bool local = uniform(0, 9) < 8;
    if (!v6) {
      std::string s = src == kPeer      ? "203.0.113." + std::to_string(uniform(1, 20))
                      : src == kBlocked ? "198.51.100." + std::to_string(uniform(8, 254))
                                        : std::string(kAllowed4);
      b.ipv4(s, local ? "192.0.2." + std::to_string(uniform(0, 15)) : std::string(kOther4));
      if (coin()) b.ipv4_options(4 * static_cast<size_t>(uniform(0, 10)));
    } else {
      char s[64] = {};
      if (src == kPeer) std::snprintf(s, sizeof s, "2001:db8:%x::%x", uniform(2, 6), uniform(1, 65535));
      if (src == kBlocked) std::snprintf(s, sizeof s, "2001:db8:bad:%x::%x", uniform(0, 65535), uniform(8, 65535));
      if (src == kAllowed) std::snprintf(s, sizeof s, "%s", kAllowed6);
      b.ipv6(s, local ? kLocal6 : kOther6);
    }

    // Layer 4.
    const unsigned proto = pick({80, 10, 5, 5});  // TCP, UDP, ICMP, ESP (v6) / GRE (v4)
    const uint16_t dport = std::vector<uint16_t>{
        25, 465, 587, 80, 443, 0, static_cast<uint16_t>(uniform(1, 65535))}[pick({30, 15, 15, 10, 10, 5, 15})];
    const uint8_t flags = std::vector<uint8_t>{kSyn,
                                               kAck,
                                               kAck | kPsh,
                                               kAck | kFin,
                                               kRst,
                                               kSyn | kAck,
                                               static_cast<uint8_t>(uniform(0, 255))}[pick({30, 25, 15, 10, 5, 5, 10})];
    const size_t tcp_options = 4 * static_cast<size_t>(uniform(0, 10));
    const size_t payload = static_cast<size_t>(uniform(0, 300));
    const bool tcp = proto == 0;
    size_t segment = payload + (tcp ? 20 + tcp_options : proto == 1 ? 8 : 0);

    // Fragment: none, first (carrying some bytes of the fragmentable part), or a later one.
    const bool fragmented = uniform(0, 9) == 0;
    const bool later = fragmented && coin();
    const size_t frag_offset = later ? 8 * static_cast<size_t>(uniform(1, 8)) : 0;
    const size_t carried_wanted = later ? 0 : 8 * static_cast<size_t>(uniform(1, 20));

    // IPv6: the extension header chain, with the fragment header at a random place in it.
    std::vector<std::pair<uint8_t, size_t>> chain;
    if (v6) {
      unsigned count = pick({50, 20, 10, 5, 3, 3, 3, 2, 2, 2});  // 0..9
      const uint8_t types[] = {IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_AH};
      for (unsigned i = 0; i < count; ++i) {
        uint8_t type = types[uniform(0, 3)];
        chain.emplace_back(
            type, type == IPPROTO_AH ? 4 * static_cast<size_t>(uniform(3, 8)) : 8 * static_cast<size_t>(uniform(1, 4)));
      }
      if (fragmented) {
        chain.insert(chain.begin() + uniform(0, static_cast<int>(chain.size())), {IPPROTO_FRAGMENT, 8});
      }
    }
    size_t after_frag = 0;  // bytes of extension headers after the fragment header
    bool seen_frag = false;
    for (auto [type, bytes] : chain) {
      if (type == IPPROTO_FRAGMENT) {
        b.fragment(frag_offset, !later || coin(), carried_wanted);
        seen_frag = true;
      } else {
        b.ipv6_ext(type, bytes);
        if (seen_frag) after_frag += bytes;
      }
    }
    if (!v6 && fragmented) b.fragment(frag_offset, !later || coin(), carried_wanted);

    if (proto == 0) b.tcp(static_cast<uint16_t>(uniform(1, 65535)), dport, flags, tcp_options);
    if (proto == 1) b.udp(static_cast<uint16_t>(uniform(1, 65535)), dport);
    if (proto == 2) b.protocol(static_cast<uint8_t>(v6 ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP}));
    if (proto == 3) b.protocol(v6 ? 50 : 47);
    b.payload(payload);
    std::vector<uint8_t> out = b.bytes();

    want->counters = {expected_counter(tags, v6, chain, later, tcp, tcp_options, after_frag, segment, carried_wanted,
                                       local, dport, fragmented)};
    if (*want->counters.begin() != kSmtp) return out;

    // SMTP: the lists, then the rate limit (whose bucket state the model does not track).
    // kAllowed4/kAllowed6 sit inside blocklisted prefixes, so they are always "rescued".
    want->counters.clear();
    if (src == kBlocked) {
      want->counters = {MXEDGE_CTR_DROP_BLOCKLIST};
    } else if (src == kAllowed) {
      want->counters = {kAnySteered};
      want->allowlisted = 1;
    } else {
      want->counters = {kAnySteered};
      if ((flags & (kSyn | kAck)) == kSyn) want->counters.insert(MXEDGE_CTR_DROP_RATE_LIMIT);
    }
    return out;
  }

  static constexpr unsigned kSmtp = 2000;

  // Parsing and classification up to "it is SMTP" (kSmtp), following bpf/parsing.h.
  static unsigned expected_counter(unsigned tags, bool v6, const std::vector<std::pair<uint8_t, size_t>>& chain,
                                   bool later, bool tcp, size_t tcp_options, size_t after_frag, size_t segment,
                                   size_t carried_wanted, bool local, uint16_t dport, bool fragmented) {
    if (tags > 2) return MXEDGE_CTR_PASS_NOT_SMTP;
    // The fragmentable part the first fragment carries (headers after the fragment header + L4).
    size_t fragmentable = after_frag + segment;
    size_t carried = fragmented && !later ? std::min(carried_wanted, fragmentable) : fragmentable;
    if (v6) {
      bool fragmentable_part = false;  // past a first fragment's header: bytes are limited to `carried`
      size_t used = 0;
      for (size_t i = 0;; ++i) {
        bool last = i == chain.size();
        if (last && tcp) break;
        if (i >= MXEDGE_MAX_IPV6_EXT_HEADERS) return MXEDGE_CTR_MALFORMED;
        if (last) return MXEDGE_CTR_PASS_NOT_SMTP;
        auto [type, bytes] = chain[i];
        if (type == IPPROTO_HOPOPTS && i != 0) return MXEDGE_CTR_MALFORMED;
        if (type == IPPROTO_FRAGMENT) {
          if (later) return i + 1 == chain.size() && tcp ? MXEDGE_CTR_PASS_FRAGMENT : MXEDGE_CTR_PASS_NOT_SMTP;
          fragmentable_part = true;
          continue;
        }
        if (fragmentable_part) {
          if (used + 2 > carried) return MXEDGE_CTR_MALFORMED;  // cannot read the header's first bytes
          used += bytes;
          if (used > carried) return MXEDGE_CTR_MALFORMED;  // runs past the payload
        }
      }
    } else {
      if (!tcp) return MXEDGE_CTR_PASS_NOT_SMTP;
      if (later) return MXEDGE_CTR_PASS_FRAGMENT;
    }
    // A complete TCP header (with its options) inside what the (first) fragment carries.
    if (carried - after_frag < 20 + tcp_options) return MXEDGE_CTR_MALFORMED;
    if (!local || !(dport == 25 || dport == 465 || dport == 587)) return MXEDGE_CTR_PASS_NOT_SMTP;
    return kSmtp;
  }

  // A damaged copy: bytes flipped, cut, extended, or garbage.
  std::vector<uint8_t> mutate(std::vector<uint8_t> f) {
    switch (uniform(0, 4)) {
      case 0:
        for (int n = uniform(1, 4); n > 0 && !f.empty(); --n)
          f[uniform(0, static_cast<int>(f.size()) - 1)] ^= uint8_t(uniform(1, 255));
        break;
      case 1:
        f.resize(uniform(0, static_cast<int>(f.size())));
        break;
      case 2:
        for (int n = uniform(1, 64); n > 0; --n) f.push_back(static_cast<uint8_t>(uniform(0, 255)));
        break;
      case 3:  // header bytes only: the first 80 bytes hold every length and type field
        for (int n = uniform(1, 3); n > 0 && !f.empty(); --n) {
          f[uniform(0, std::min(79, static_cast<int>(f.size()) - 1))] = static_cast<uint8_t>(uniform(0, 255));
        }
        break;
      default:
        f.assign(uniform(0, 200), 0);
        for (auto& byte : f) byte = static_cast<uint8_t>(uniform(0, 255));
        if (f.size() >= 14 && coin()) {  // often with an IP EtherType, to get past layer 2
          f[12] = coin() ? 0x08 : 0x86;
          f[13] = f[12] == 0x08 ? 0x00 : 0xdd;
        }
    }
    return f;
  }

  bool coin() { return uniform(0, 1) == 1; }
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  unsigned pick(std::initializer_list<int> weights) {
    return static_cast<unsigned>(std::discrete_distribution<int>(weights.begin(), weights.end())(rng_));
  }

 private:
  std::mt19937_64 rng_;
};

// The config the random and differential tests run: the fixture's lists and local addresses, one
// worker per CPU, and a SYN rate limit tight enough (5/s, burst 2) that random SYNs meet it.
inline xdp::XdpConfig random_config(xdp::XdpConfig fixture) {
  fixture.worker_cpus.clear();
  for (unsigned cpu = 0; cpu < possible_cpus(); ++cpu) fixture.worker_cpus.push_back(cpu);
  fixture.syn_rate = 5;
  fixture.syn_burst = 2;
  return fixture;
}

// MXEDGE_BPF_SEED / MXEDGE_BPF_FRAMES, or the fallback.
inline uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

}  // namespace mxedge::bpftest
