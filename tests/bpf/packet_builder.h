// Builds Ethernet frames for the BPF tests and the benchmark: VLAN/QinQ tags, IPv4 with options,
// IPv6 with extension headers, fragments, TCP with flags and options, UDP, raw protocols. Checksums
// (IPv4 header, TCP/UDP over the pseudo-header and the whole segment, also when fragmented) are
// computed, although XDP does not check them, so frames are also valid on a real link.
//
//   auto frame = PacketBuilder().vlan(0x88a8, 10).vlan(0x8100, 20)
//                    .ipv6("2001:db8::1", "2001:db8::2").ipv6_ext(IPPROTO_DSTOPTS, 8)
//                    .tcp(40000, 25, kSyn).build();
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mxedge::bpftest {

inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;

struct Frame {
  std::vector<uint8_t> bytes;
  size_t l3 = 0;  // offset of the IP header
  size_t l4 = 0;  // offset of the TCP/UDP header (or of the fragment's data); 0 when absent
};

class PacketBuilder {
 public:
  PacketBuilder& vlan(uint16_t tpid, uint16_t vid);  // outermost first
  PacketBuilder& ethertype(uint16_t type);           // a non-IP frame
  PacketBuilder& ipv4(std::string_view src, std::string_view dst);
  PacketBuilder& ipv6(std::string_view src, std::string_view dst);
  PacketBuilder& ipv4_options(size_t bytes);  // NOPs; a multiple of 4, at most 40
  // IPv6 extension header of this type and total size, in call order: IPPROTO_HOPOPTS,
  // IPPROTO_ROUTING, IPPROTO_DSTOPTS (multiples of 8) or IPPROTO_AH (multiple of 4, >= 12).
  PacketBuilder& ipv6_ext(uint8_t type, size_t bytes);
  // This frame is one fragment: `carried` bytes (0: all the rest) of the fragmentable part from
  // offset_bytes (a multiple of 8). IPv6: the fragment header goes here in the ext chain, and the
  // headers added after it belong to the fragmentable part.
  PacketBuilder& fragment(size_t offset_bytes, bool more, size_t carried = 0);
  PacketBuilder& tcp(uint16_t sport, uint16_t dport, uint8_t flags, size_t option_bytes = 0);
  PacketBuilder& udp(uint16_t sport, uint16_t dport);
  PacketBuilder& protocol(uint8_t proto);  // any other L4 protocol, body = payload
  PacketBuilder& payload(size_t bytes);    // deterministic filler
  PacketBuilder& ttl(uint8_t hops);
  PacketBuilder& ip_id(uint32_t id);

  Frame build() const;
  std::vector<uint8_t> bytes() const { return build().bytes; }

 private:
  struct Ext {
    uint8_t type;
    size_t bytes;
  };
  std::vector<std::pair<uint16_t, uint16_t>> vlans_;
  uint16_t ethertype_ = 0;
  int family_ = 0;  // 4, 6, or 0 (non-IP)
  std::vector<uint8_t> src_, dst_;
  size_t ipv4_options_ = 0;
  std::vector<Ext> ext_;
  std::optional<size_t> frag_index_;  // position in ext_ before which the IPv6 fragment header sits
  size_t frag_offset_ = 0;
  bool frag_more_ = false;
  size_t frag_carried_ = 0;
  bool fragmented_ = false;
  uint8_t proto_ = 0;
  uint16_t sport_ = 0, dport_ = 0;
  uint8_t tcp_flags_ = 0;
  size_t tcp_options_ = 0;
  size_t payload_ = 0;
  uint8_t ttl_ = 64;
  uint32_t id_ = 0x1234;
};

// The Internet checksum (RFC 1071) of data, folded, not inverted, starting from sum.
uint32_t checksum_add(const uint8_t* data, size_t len, uint32_t sum);
uint16_t checksum_fold(uint32_t sum);

}  // namespace mxedge::bpftest
