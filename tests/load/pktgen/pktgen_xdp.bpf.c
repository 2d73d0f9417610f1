// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* pktgen_xdp.bpf.c: the frame rewriter of mxedge-pktgen (tests/load/pktgen/mxedge_pktgen.cc).
 *
 * mxedge-pktgen runs this program with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES: the kernel puts
 * a stream's template frame in each page of a page pool once, runs the program on it, and sends
 * every frame the program returns XDP_TX for out of the ingress device's ndo_xdp_xmit (veth, or a
 * NIC driver that can be an XDP redirect target). Per frame, the program writes fresh variable
 * fields over the template and patches the checksums incrementally (RFC 1624), so each frame on the
 * wire has correct IPv4 header and TCP/UDP checksums:
 *   - the source address: the stream's src_base with the bits of src_mask drawn at random (a fixed
 *     source when the mask is 0);
 *   - the L4 source port (random, 1024..65535) and, for TCP, the sequence number (random);
 *   - the IPv4 identification (random).
 * Everything is written from the stream's table entry, never derived from what the page held
 * before: pages are recycled with the previous frame's content, so only the template's constant
 * bytes can be trusted.
 *
 * One program serves every stream (a kind of frame and an address family): the streams' layouts
 * are in the read-only table below (offsets computed by mxedge-pktgen from the templates it built;
 * 0: the field is absent), and the stream of the next test run on a CPU is stream_of_cpu[cpu],
 * which mxedge-pktgen writes through the memory-mapped .bss before each run from a thread pinned to
 * that CPU (a test run runs on the calling CPU with migration off). One program, not one per
 * stream, because a test run adds its program to the kernel's XDP dispatcher and removes it after,
 * which costs a text patch and an RCU grace period (~20 ms) unless the program is already there;
 * mxedge-pktgen keeps it there by attaching it to a device of its own that never receives a frame.
 *
 * The per-CPU, per-stream counter `sent` counts frames returned XDP_TX (the frames generated).
 */
#include <linux/bpf.h>
#include <linux/types.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "pktgen_abi.h"

const volatile struct pktgen_stream streams[PKTGEN_MAX_STREAMS] = {};

__u32 stream_of_cpu[PKTGEN_MAX_CPUS] = {};

struct pktgen_stats {
	__u64 sent;
	__u64 bad_frames; /* shorter than the stream's layout, or no such stream: dropped */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PKTGEN_MAX_STREAMS);
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

/* The byte at data + off .. + size, or NULL when it is not inside the frame. */
static __always_inline void *field(void *data, void *data_end, __u32 off, __u32 size)
{
	void *p;

	if (off == 0 || off > PKTGEN_MAX_FRAME)
		return 0;
	p = data + off;
	if (p + size > data_end)
		return 0;
	return p;
}

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
	const volatile struct pktgen_stream *s;
	__u16 *ip_sum, *l4_sum;
	struct pktgen_stats *st;
	__u32 cpu, idx, key;
	void *p;

	cpu = bpf_get_smp_processor_id();
	if (cpu >= PKTGEN_MAX_CPUS)
		return XDP_ABORTED;
	idx = stream_of_cpu[cpu & (PKTGEN_MAX_CPUS - 1)];
	if (idx >= PKTGEN_MAX_STREAMS)
		return XDP_ABORTED;
	key = idx;
	st = bpf_map_lookup_elem(&stats, &key);
	if (!st)
		return XDP_ABORTED;
	/* The mask (the sizes are powers of two) keeps the index provably in bounds for the verifier
	 * even where the compiler reloads it from the stack after the check. */
	s = &streams[idx & (PKTGEN_MAX_STREAMS - 1)];
	if (s->frame_len < 14 || s->frame_len > PKTGEN_MAX_FRAME || data + s->frame_len > data_end) {
		st->bad_frames++;
		return XDP_DROP;
	}
	ip_sum = field(data, data_end, s->ipv4_csum_off, 2);
	l4_sum = field(data, data_end, s->l4_csum_off, 2);

	if (s->src_words == 1) {
		p = field(data, data_end, s->src_addr_off, 4);
		if (p)
			put32(p, (s->src_base[0] & ~s->src_mask[0]) | (bpf_get_prandom_u32() & s->src_mask[0]),
			      ip_sum, l4_sum);
	} else if (s->src_words == 4) {
		p = field(data, data_end, s->src_addr_off, 16);
		if (p) {
#pragma unroll
			for (int i = 0; i < 4; i++)
				put32(p + 4 * i,
				      (s->src_base[i] & ~s->src_mask[i]) | (bpf_get_prandom_u32() & s->src_mask[i]),
				      0, l4_sum);
		}
	}
	p = field(data, data_end, s->ipv4_id_off, 2);
	if (p)
		put16(p, (__u16)bpf_get_prandom_u32(), ip_sum, 0);
	p = field(data, data_end, s->sport_off, 2);
	if (p)
		put16(p, bpf_htons(1024 + bpf_get_prandom_u32() % 64512), 0, l4_sum);
	p = field(data, data_end, s->tcp_seq_off, 4);
	if (p)
		put32(p, bpf_get_prandom_u32(), 0, l4_sum);
	if (l4_sum && s->l4_csum_zero_is_ffff && *l4_sum == 0)
		*l4_sum = 0xffff;

	st->sent++;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
