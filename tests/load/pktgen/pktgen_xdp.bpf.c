// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* pktgen_xdp.bpf.c: the frame rewriter of mxedge-pktgen (tests/load/pktgen/mxedge_pktgen.cc).
 *
 * mxedge-pktgen runs this program with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES: the kernel puts
 * the stream's template frame in each page of a page pool once, runs the program on it, and sends
 * every frame the program returns XDP_TX for out of the ingress device's ndo_xdp_xmit (veth, or a
 * NIC driver that can be an XDP redirect target). Per frame, the program writes fresh variable
 * fields over the template and patches the checksums incrementally (RFC 1624), so each frame on the
 * wire has correct IPv4 header and TCP/UDP checksums:
 *   - the source address: src_base with the bits of src_mask drawn at random (a fixed source when
 *     the mask is 0);
 *   - the L4 source port (random, 1024..65535) and, for TCP, the sequence number (random);
 *   - the IPv4 identification (random).
 * Everything is written from the rodata, never derived from what the page held before: pages are
 * recycled with the previous frame's content, so only the template's constant bytes can be trusted.
 *
 * One program is loaded per stream (a kind of frame and an address family); the offsets below are
 * that stream's layout, computed by mxedge-pktgen from the template it built (0: the field is
 * absent). The verifier sees them as constants (frozen .rodata).
 *
 * The per-CPU counter `sent` counts frames returned XDP_TX (the frames generated); a frame shorter
 * than the layout (impossible unless the template and the offsets disagree) is dropped and counted
 * in `short_frames`.
 */
#include <linux/bpf.h>
#include <linux/types.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 src_addr_off = 0;	/* first byte of the source address */
const volatile __u32 src_words = 0;	/* 1 (IPv4) or 4 (IPv6) */
const volatile __u32 src_base[4] = {0}; /* network byte order */
const volatile __u32 src_mask[4] = {0}; /* bits drawn at random, network byte order */
const volatile __u32 ipv4_csum_off = 0; /* IPv4 header checksum; 0 for IPv6 */
const volatile __u32 ipv4_id_off = 0;	/* IPv4 identification; 0 for IPv6 */
const volatile __u32 l4_csum_off = 0;	/* TCP/UDP checksum; 0 when there is no L4 header */
const volatile __u32 l4_csum_zero_is_ffff = 0; /* UDP: a computed 0 is sent as 0xffff */
const volatile __u32 sport_off = 0;	/* L4 source port; 0: absent */
const volatile __u32 tcp_seq_off = 0;	/* TCP sequence number; 0: absent */
const volatile __u32 frame_len = 0;	/* the template's length */

struct pktgen_stats {
	__u64 sent;
	__u64 short_frames;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pktgen_stats);
} stats SEC(".maps");

/* One's-complement replace of a 16-bit word in the checksum *sum (RFC 1624 eqn. 3). */
static __always_inline void csum_replace2(__u16 *sum, __u16 from, __u16 to)
{
	__u32 s = (__u16)~*sum;

	s += (__u16)~from;
	s += to;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	*sum = (__u16)~s;
}

static __always_inline void csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	csum_replace2(sum, (__u16)(from >> 16), (__u16)(to >> 16));
	csum_replace2(sum, (__u16)from, (__u16)to);
}

/* Replaces the 32-bit word at p (any alignment is fine for the bytes; the sum is order-free). */
static __always_inline void put32(void *p, __u32 value, __u16 *ip_sum, __u16 *l4_sum)
{
	__u32 old;

	__builtin_memcpy(&old, p, 4);
	if (ip_sum)
		csum_replace4(ip_sum, old, value);
	if (l4_sum)
		csum_replace4(l4_sum, old, value);
	__builtin_memcpy(p, &value, 4);
}

static __always_inline void put16(void *p, __u16 value, __u16 *ip_sum, __u16 *l4_sum)
{
	__u16 old;

	__builtin_memcpy(&old, p, 2);
	if (ip_sum)
		csum_replace2(ip_sum, old, value);
	if (l4_sum)
		csum_replace2(l4_sum, old, value);
	__builtin_memcpy(p, &value, 2);
}

SEC("xdp")
int pktgen_rewrite(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 *ip_sum = 0, *l4_sum = 0;
	struct pktgen_stats *st;
	__u32 key = 0;

	st = bpf_map_lookup_elem(&stats, &key);
	if (!st)
		return XDP_ABORTED;
	/* Every offset below is < frame_len - 3 (mxedge-pktgen checks), so one bound covers all. */
	if (frame_len < 20 || frame_len > 1514 || data + frame_len > data_end) {
		st->short_frames++;
		return XDP_DROP;
	}
	if (ipv4_csum_off && ipv4_csum_off + 2 <= frame_len)
		ip_sum = data + ipv4_csum_off;
	if (l4_csum_off && l4_csum_off + 2 <= frame_len)
		l4_sum = data + l4_csum_off;

	if (src_words == 1 && src_addr_off + 4 <= frame_len) {
		__u32 a = (src_base[0] & ~src_mask[0]) | (bpf_get_prandom_u32() & src_mask[0]);

		put32(data + src_addr_off, a, ip_sum, l4_sum);
	} else if (src_words == 4 && src_addr_off + 16 <= frame_len) {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			__u32 a = (src_base[i] & ~src_mask[i]) | (bpf_get_prandom_u32() & src_mask[i]);

			put32(data + src_addr_off + 4 * i, a, 0, l4_sum);
		}
	}
	if (ipv4_id_off && ipv4_id_off + 2 <= frame_len)
		put16(data + ipv4_id_off, (__u16)bpf_get_prandom_u32(), ip_sum, 0);
	if (sport_off && sport_off + 2 <= frame_len)
		put16(data + sport_off, bpf_htons(1024 + bpf_get_prandom_u32() % 64512), 0, l4_sum);
	if (tcp_seq_off && tcp_seq_off + 4 <= frame_len)
		put32(data + tcp_seq_off, bpf_get_prandom_u32(), 0, l4_sum);
	if (l4_sum && l4_csum_zero_is_ffff && *l4_sum == 0)
		*l4_sum = 0xffff;

	st->sent++;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
