// Frame construction; see packet_builder.h.
#include "tests/bpf/packet_builder.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <stdexcept>

namespace mxedge::bpftest {
namespace {

void put16(std::vector<uint8_t>& v, size_t at, uint16_t x) {
  v[at] = static_cast<uint8_t>(x >> 8);
  v[at + 1] = static_cast<uint8_t>(x);
}

void append16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(static_cast<uint8_t>(x >> 8));
  v.push_back(static_cast<uint8_t>(x));
}

void append32(std::vector<uint8_t>& v, uint32_t x) {
  append16(v, static_cast<uint16_t>(x >> 16));
  append16(v, static_cast<uint16_t>(x));
}

std::vector<uint8_t> parse_address(std::string_view text, int family) {
  std::string s(text);
  std::vector<uint8_t> out(family == 4 ? 4 : 16);
  if (inet_pton(family == 4 ? AF_INET : AF_INET6, s.c_str(), out.data()) != 1) {
    throw std::invalid_argument("bad address " + s);
  }
  return out;
}

// An IPv6 options header (HBH, destination options) or routing header of `bytes`, PadN-filled.
std::vector<uint8_t> ext_header(uint8_t type, uint8_t next, size_t bytes) {
  std::vector<uint8_t> h;
  h.push_back(next);
  if (type == IPPROTO_AH) {
    h.push_back(static_cast<uint8_t>(bytes / 4 - 2));
    append16(h, 0);         // reserved
    append32(h, 0x100);     // SPI
    append32(h, 1);         // sequence number
    h.resize(bytes, 0xab);  // ICV
    return h;
  }
  h.push_back(static_cast<uint8_t>(bytes / 8 - 1));
  if (type == IPPROTO_ROUTING) {
    h.push_back(253);  // routing type reserved for experiments (RFC 4727)
    h.push_back(0);    // segments left: 0, so receivers ignore the unknown type
    h.resize(bytes, 0);
    return h;
  }
  size_t pad = bytes - 2;
  if (pad == 1) {
    h.push_back(0);  // Pad1
  } else {
    h.push_back(1);  // PadN
    h.push_back(static_cast<uint8_t>(pad - 2));
    h.resize(bytes, 0);
  }
  return h;
}

}  // namespace

uint32_t checksum_add(const uint8_t* data, size_t len, uint32_t sum) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (len & 1) sum += static_cast<uint32_t>(data[len - 1] << 8);
  return sum;
}

uint16_t checksum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

PacketBuilder& PacketBuilder::vlan(uint16_t tpid, uint16_t vid) {
  vlans_.emplace_back(tpid, vid);
  return *this;
}
PacketBuilder& PacketBuilder::ethertype(uint16_t type) {
  ethertype_ = type;
  family_ = 0;
  return *this;
}
PacketBuilder& PacketBuilder::ipv4(std::string_view src, std::string_view dst) {
  family_ = 4;
  src_ = parse_address(src, 4);
  dst_ = parse_address(dst, 4);
  return *this;
}
PacketBuilder& PacketBuilder::ipv6(std::string_view src, std::string_view dst) {
  family_ = 6;
  src_ = parse_address(src, 6);
  dst_ = parse_address(dst, 6);
  return *this;
}
PacketBuilder& PacketBuilder::ipv4_options(size_t bytes) {
  if (bytes % 4 || bytes > 40) throw std::invalid_argument("IPv4 options: multiple of 4, at most 40");
  ipv4_options_ = bytes;
  return *this;
}
PacketBuilder& PacketBuilder::ipv6_ext(uint8_t type, size_t bytes) {
  bool ok = type == IPPROTO_AH ? (bytes >= 12 && bytes % 4 == 0 && bytes <= 1024)
                               : (bytes >= 8 && bytes % 8 == 0 && bytes <= 2048);
  if (!ok) throw std::invalid_argument("bad IPv6 extension header size");
  ext_.push_back({type, bytes});
  return *this;
}
PacketBuilder& PacketBuilder::fragment(size_t offset_bytes, bool more, size_t carried) {
  if (offset_bytes % 8) throw std::invalid_argument("fragment offset: multiple of 8");
  fragmented_ = true;
  frag_index_ = ext_.size();
  frag_offset_ = offset_bytes;
  frag_more_ = more;
  frag_carried_ = carried;
  return *this;
}
PacketBuilder& PacketBuilder::tcp(uint16_t sport, uint16_t dport, uint8_t flags, size_t option_bytes) {
  if (option_bytes % 4 || option_bytes > 40) throw std::invalid_argument("TCP options: multiple of 4, <= 40");
  proto_ = IPPROTO_TCP;
  sport_ = sport;
  dport_ = dport;
  tcp_flags_ = flags;
  tcp_options_ = option_bytes;
  return *this;
}
PacketBuilder& PacketBuilder::udp(uint16_t sport, uint16_t dport) {
  proto_ = IPPROTO_UDP;
  sport_ = sport;
  dport_ = dport;
  return *this;
}
PacketBuilder& PacketBuilder::protocol(uint8_t proto) {
  proto_ = proto;
  return *this;
}
PacketBuilder& PacketBuilder::payload(size_t bytes) {
  payload_ = bytes;
  return *this;
}
PacketBuilder& PacketBuilder::ttl(uint8_t hops) {
  ttl_ = hops;
  return *this;
}
PacketBuilder& PacketBuilder::ip_id(uint32_t id) {
  id_ = id;
  return *this;
}

Frame PacketBuilder::build() const {
  Frame f;
  std::vector<uint8_t>& b = f.bytes;
  // Ethernet: locally administered unicast MACs.
  const uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 0x02};
  const uint8_t smac[6] = {0x02, 0, 0, 0, 0, 0x01};
  b.insert(b.end(), dmac, dmac + 6);
  b.insert(b.end(), smac, smac + 6);
  for (auto [tpid, vid] : vlans_) {
    append16(b, tpid);
    append16(b, vid & 0x0fff);
  }
  uint16_t type = family_ == 4 ? 0x0800 : family_ == 6 ? 0x86dd : ethertype_;
  append16(b, type);
  if (family_ == 0) {
    b.resize(b.size() + payload_, 0x5a);
    return f;
  }

  // The L4 segment (header + payload), checksummed over the whole segment.
  std::vector<uint8_t> seg;
  if (proto_ == IPPROTO_TCP) {
    append16(seg, sport_);
    append16(seg, dport_);
    append32(seg, 0x01020304);                                            // seq
    append32(seg, (tcp_flags_ & kAck) ? 0x0a0b0c0d : 0);                  // ack
    seg.push_back(static_cast<uint8_t>(((20 + tcp_options_) / 4) << 4));  // data offset
    seg.push_back(tcp_flags_);
    append16(seg, 64240);                      // window
    append16(seg, 0);                          // checksum, below
    append16(seg, 0);                          // urgent
    seg.resize(seg.size() + tcp_options_, 1);  // NOP options
  } else if (proto_ == IPPROTO_UDP) {
    append16(seg, sport_);
    append16(seg, dport_);
    append16(seg, static_cast<uint16_t>(8 + payload_));
    append16(seg, 0);
  }
  for (size_t i = 0; i < payload_; ++i) seg.push_back(static_cast<uint8_t>('a' + i % 26));
  if (proto_ == IPPROTO_TCP || proto_ == IPPROTO_UDP) {
    uint32_t sum = checksum_add(src_.data(), src_.size(), 0);
    sum = checksum_add(dst_.data(), dst_.size(), sum);
    sum += proto_;
    sum += static_cast<uint32_t>(seg.size());
    sum = checksum_add(seg.data(), seg.size(), sum);
    uint16_t c = static_cast<uint16_t>(~checksum_fold(sum));
    if (proto_ == IPPROTO_UDP && c == 0) c = 0xffff;
    put16(seg, proto_ == IPPROTO_TCP ? 16 : 6, c);
  }

  f.l3 = b.size();
  if (family_ == 4) {
    std::vector<uint8_t> body = seg;
    if (fragmented_) {
      size_t end = frag_carried_ ? std::min(seg.size(), frag_offset_ + frag_carried_) : seg.size();
      size_t start = std::min(frag_offset_, seg.size());
      body.assign(seg.begin() + static_cast<long>(start), seg.begin() + static_cast<long>(end));
    }
    size_t ihl = 20 + ipv4_options_;
    std::vector<uint8_t> ip;
    ip.push_back(static_cast<uint8_t>(0x40 | ihl / 4));
    ip.push_back(0);
    append16(ip, static_cast<uint16_t>(ihl + body.size()));
    append16(ip, static_cast<uint16_t>(id_));
    uint16_t frag = 0x4000;  // DF
    if (fragmented_) frag = static_cast<uint16_t>((frag_more_ ? 0x2000 : 0) | (frag_offset_ / 8));
    append16(ip, frag);
    ip.push_back(ttl_);
    ip.push_back(proto_);
    append16(ip, 0);
    ip.insert(ip.end(), src_.begin(), src_.end());
    ip.insert(ip.end(), dst_.begin(), dst_.end());
    ip.resize(ihl, 1);  // NOP options
    put16(ip, 10, static_cast<uint16_t>(~checksum_fold(checksum_add(ip.data(), ip.size(), 0))));
    b.insert(b.end(), ip.begin(), ip.end());
    f.l4 = b.size();
    b.insert(b.end(), body.begin(), body.end());
    return f;
  }

  // IPv6: the header chain in order, with the fragment header (if any) at its position; headers
  // before it are unfragmentable, headers after it belong to the fragmentable part with the segment.
  std::vector<uint8_t> types;
  std::vector<size_t> sizes;
  size_t split = frag_index_.value_or(ext_.size());
  for (size_t i = 0; i <= ext_.size(); ++i) {
    if (fragmented_ && i == split) {
      types.push_back(IPPROTO_FRAGMENT);
      sizes.push_back(8);
    }
    if (i < ext_.size()) {
      types.push_back(ext_[i].type);
      sizes.push_back(ext_[i].bytes);
    }
  }
  auto next_after = [&](size_t k) -> uint8_t { return k + 1 < types.size() ? types[k + 1] : proto_; };
  std::vector<uint8_t> unfrag, fragmentable;
  size_t frag_pos = types.size();
  for (size_t k = 0; k < types.size(); ++k) {
    if (types[k] == IPPROTO_FRAGMENT) {
      frag_pos = k;
      continue;
    }
    auto h = ext_header(types[k], next_after(k), sizes[k]);
    auto& dest = k > frag_pos ? fragmentable : unfrag;
    dest.insert(dest.end(), h.begin(), h.end());
  }
  size_t fragmentable_headers = fragmentable.size();
  fragmentable.insert(fragmentable.end(), seg.begin(), seg.end());
  std::vector<uint8_t> carried = fragmentable;
  std::vector<uint8_t> fh;
  if (fragmented_) {
    size_t end = frag_carried_ ? std::min(fragmentable.size(), frag_offset_ + frag_carried_) : fragmentable.size();
    size_t start = std::min(frag_offset_, fragmentable.size());
    carried.assign(fragmentable.begin() + static_cast<long>(start), fragmentable.begin() + static_cast<long>(end));
    fh.push_back(next_after(frag_pos));
    fh.push_back(0);
    append16(fh, static_cast<uint16_t>(frag_offset_ | (frag_more_ ? 1 : 0)));
    append32(fh, id_);
  }
  std::vector<uint8_t> ip;
  append32(ip, 0x60000000);
  append16(ip, static_cast<uint16_t>(unfrag.size() + fh.size() + carried.size()));
  ip.push_back(types.empty() ? proto_ : types[0]);
  ip.push_back(ttl_);
  ip.insert(ip.end(), src_.begin(), src_.end());
  ip.insert(ip.end(), dst_.begin(), dst_.end());
  b.insert(b.end(), ip.begin(), ip.end());
  b.insert(b.end(), unfrag.begin(), unfrag.end());
  b.insert(b.end(), fh.begin(), fh.end());
  f.l4 = b.size() + (fragmented_ && frag_offset_ > 0 ? 0 : fragmentable_headers);
  b.insert(b.end(), carried.begin(), carried.end());
  return f;
}

}  // namespace mxedge::bpftest
