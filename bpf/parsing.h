/* parsing.h: bounds-checked parsing of Ethernet, 802.1Q/802.1ad tags, IPv4, IPv6 and TCP for the
 * XDP program. Each parser returns one of the MXEDGE_PARSE_* results; none reads a byte it has not
 * first checked against data_end (the verifier rejects the program otherwise).
 *
 * STANDARDS: IEEE 802.1Q (C-tag 0x8100, S-tag 0x88a8), RFC 791 (IPv4), RFC 8200 (IPv6 and its
 * extension headers), RFC 4302 (AH length), RFC 7112 (the first fragment carries the whole header
 * chain), RFC 1858 (tiny first fragments), RFC 9293 (TCP).
 *
 * SECURITY: every byte parsed here comes from an unauthenticated peer. What counts as malformed is
 * chosen so that it is a subset of what the kernel's own receive path discards (or, for over-long
 * IPv6 header chains, of what no legitimate sender emits): dropping it cannot hurt a valid flow,
 * and a frame this parser gives up on can never reach TCP behind the blocklist's back.
 *
 * The rules, which bpf/README.md repeats for operators:
 * - Truncated or inconsistent headers (frame ends inside a header, IPv4 version/IHL/total length
 *   wrong or beyond the frame, IPv6 payload length beyond the frame, TCP data offset below 5 or
 * past the datagram, HBH not first, more than MXEDGE_MAX_IPV6_EXT_HEADERS extension headers):
 *   MXEDGE_PARSE_MALFORMED.
 * - Non-first fragments carry no TCP header, and XDP keeps no reassembly state: a non-first
 * fragment of a TCP datagram is MXEDGE_PARSE_FRAGMENT (the caller passes it; if the first fragment
 * was dropped, the kernel's reassembly times out and frees the rest).
 * - First fragments are classified by the TCP header they carry; one that does not carry the whole
 *   20-byte TCP header (RFC 1858 tiny fragment, RFC 7112 incomplete chain) is
 * MXEDGE_PARSE_MALFORMED.
 * - IPv6 atomic fragments (offset 0, M clear) are unfragmented packets (RFC 6946).
 * - Anything that is not TCP over IPv4/IPv6 (other EtherTypes, other protocols, ESP, unknown IPv6
 *   next headers, more than two VLAN tags) is MXEDGE_PARSE_NOT_TCP.
 */
#ifndef MXEDGE_BPF_PARSING_H
#define MXEDGE_BPF_PARSING_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/types.h>

#include "mxedge_abi.h"
#include "portable.h"

enum mxedge_parse_result {
	MXEDGE_PARSE_TCP = 0, /* a TCP header, complete, inside the datagram */
	MXEDGE_PARSE_NOT_TCP = 1,
	MXEDGE_PARSE_FRAGMENT = 2,
	MXEDGE_PARSE_MALFORMED = 3,
};

#define MXEDGE_VLAN_MAX_DEPTH 2 /* QinQ: an S-tag (or C-tag) then a C-tag */

/* Not in the UAPI headers: the 802.1Q tag after the MAC addresses, and the IPv6 fragment header. */
struct mxedge_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

struct mxedge_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3, then 2 reserved bits and M */
	__be32 identification;
};

#define MXEDGE_IP_MF 0x2000
#define MXEDGE_IP_OFFSET 0x1fff
#define MXEDGE_IP6_OFFSET 0xfff8
#define MXEDGE_IP6_MF 0x0001

/* What the SMTP logic needs from a parsed TCP packet. Addresses point into the frame; they are read
 * as 32-bit words (the frame may put them at 2-byte alignment, which the architectures XDP runs on
 * read without a fault or a penalty worth a byte-wise copy). */
struct mxedge_packet {
	struct tcphdr *tcp;
	const __u32 *saddr; /* 1 or 4 words */
	const __u32 *daddr;
	__u32 family; /* MXEDGE_FAMILY_IPV4 or MXEDGE_FAMILY_IPV6 */
};

static __always_inline int is_vlan_proto(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* Ethernet and up to two VLAN tags. On success *l3 points past them and *proto is the inner
 * EtherType (network byte order). */
static __always_inline int parse_ethernet(void *data, void *data_end, void **l3, __be16 *proto)
{
	struct ethhdr *eth = data;
	void *pos;
	__be16 type;

	if ((void *)(eth + 1) > data_end)
		return MXEDGE_PARSE_MALFORMED;
	type = eth->h_proto;
	pos = eth + 1;

MXEDGE_UNROLL
	for (int i = 0; i < MXEDGE_VLAN_MAX_DEPTH; i++) {
		struct mxedge_vlan_hdr *vlan = pos;

		if (!is_vlan_proto(type))
			break;
		if ((void *)(vlan + 1) > data_end)
			return MXEDGE_PARSE_MALFORMED;
		type = vlan->encap_proto;
		pos = vlan + 1;
	}
	*l3 = pos;
	*proto = type;
	return MXEDGE_PARSE_TCP;
}

/* The TCP header at tcp, of which `room` bytes lie inside the datagram. */
static __always_inline int parse_tcp(struct tcphdr *tcp, void *data_end, __u32 room)
{
	__u32 doff;

	if (room < sizeof(struct tcphdr))
		return MXEDGE_PARSE_MALFORMED;
	if ((void *)(tcp + 1) > data_end)
		return MXEDGE_PARSE_MALFORMED; /* implied by room; the verifier wants to see it */
	doff = tcp->doff * 4;
	if (doff < sizeof(struct tcphdr) || doff > room)
		return MXEDGE_PARSE_MALFORMED;
	return MXEDGE_PARSE_TCP;
}

static __always_inline int parse_ipv4(void *l3, void *data_end, struct mxedge_packet *pkt)
{
	struct iphdr *ip = l3;
	__u32 ihl, total;

	if ((void *)(ip + 1) > data_end)
		return MXEDGE_PARSE_MALFORMED;
	if (ip->version != 4)
		return MXEDGE_PARSE_MALFORMED;
	ihl = ip->ihl * 4;
	total = bpf_ntohs(ip->tot_len);
	MXEDGE_BOUND16(total);
	if (ihl < sizeof(*ip) || total < ihl)
		return MXEDGE_PARSE_MALFORMED;
	if (l3 + total > data_end)
		return MXEDGE_PARSE_MALFORMED; /* truncated datagram; trailing Ethernet padding is
						  fine */
	if (ip->protocol != IPPROTO_TCP)
		return MXEDGE_PARSE_NOT_TCP;
	if (ip->frag_off & bpf_htons(MXEDGE_IP_OFFSET))
		return MXEDGE_PARSE_FRAGMENT;

	pkt->tcp = l3 + ihl; /* options, if any, are skipped unread */
	pkt->saddr = (const __u32 *)&ip->saddr;
	pkt->daddr = (const __u32 *)&ip->daddr;
	pkt->family = MXEDGE_FAMILY_IPV4;
	return parse_tcp(pkt->tcp, data_end, total - ihl);
}

/* IPv6 and the extension headers that can be skipped safely: hop-by-hop (first only), routing,
 * destination options, fragment (by the fragment rule), AH. */
static __always_inline int parse_ipv6(void *l3, void *data_end, struct mxedge_packet *pkt)
{
	struct ipv6hdr *ip6 = l3;
	__u32 payload, skipped = 0;
	__u8 next;

	if ((void *)(ip6 + 1) > data_end)
		return MXEDGE_PARSE_MALFORMED;
	if (ip6->version != 6)
		return MXEDGE_PARSE_MALFORMED;
	payload = bpf_ntohs(ip6->payload_len);
	MXEDGE_BOUND16(payload);
	if ((void *)(ip6 + 1) + payload > data_end)
		return MXEDGE_PARSE_MALFORMED; /* truncated; a jumbogram (payload 0) never reaches
						  XDP */
	next = ip6->nexthdr;

MXEDGE_UNROLL
	for (int i = 0; i < MXEDGE_MAX_IPV6_EXT_HEADERS; i++) {
		void *pos = (void *)(ip6 + 1) + skipped;
		struct ipv6_opt_hdr *opt = pos;
		struct mxedge_frag_hdr *frag = pos;

		if (next == IPPROTO_TCP)
			break;
		switch (next) {
		case IPPROTO_HOPOPTS:
			if (i != 0)
				return MXEDGE_PARSE_MALFORMED; /* RFC 8200 4.1: only right after the
								  header */
							       /* fall through */
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if ((void *)(opt + 1) > data_end)
				return MXEDGE_PARSE_MALFORMED;
			next = opt->nexthdr;
			skipped += (opt->hdrlen + 1) * 8;
			break;
		case IPPROTO_AH:
			if ((void *)(opt + 1) > data_end)
				return MXEDGE_PARSE_MALFORMED;
			next = opt->nexthdr;
			skipped += (opt->hdrlen + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			if ((void *)(frag + 1) > data_end)
				return MXEDGE_PARSE_MALFORMED;
			if (frag->frag_off & bpf_htons(MXEDGE_IP6_OFFSET))
				return frag->nexthdr == IPPROTO_TCP ? MXEDGE_PARSE_FRAGMENT
								    : MXEDGE_PARSE_NOT_TCP;
			/* First or atomic fragment: the rest of the chain follows (RFC 7112). */
			next = frag->nexthdr;
			skipped += sizeof(*frag);
			break;
		default:
			return MXEDGE_PARSE_NOT_TCP; /* ESP, no next header, UDP, ICMPv6, unknown */
		}
		if (skipped > payload)
			return MXEDGE_PARSE_MALFORMED; /* header runs past the payload */
	}
	if (next != IPPROTO_TCP)
		return MXEDGE_PARSE_MALFORMED; /* longer chain than any legitimate sender uses */

	pkt->tcp = (void *)(ip6 + 1) + skipped;
	pkt->saddr = (const __u32 *)&ip6->saddr;
	pkt->daddr = (const __u32 *)&ip6->daddr;
	pkt->family = MXEDGE_FAMILY_IPV6;
	return parse_tcp(pkt->tcp, data_end, payload - skipped);
}

#endif /* MXEDGE_BPF_PARSING_H */
