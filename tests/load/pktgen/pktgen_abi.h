/* pktgen_abi.h: what mxedge-pktgen (mxedge_pktgen.cc) and its rewriter program (pktgen_xdp.bpf.c)
 * share: the stream table entry and the sizes. Fixed-width fields only, no implicit padding; compiled
 * as C by clang -target bpf and as C++ by the tool. */
#ifndef MXEDGE_TESTS_LOAD_PKTGEN_ABI_H
#define MXEDGE_TESTS_LOAD_PKTGEN_ABI_H

#include <linux/types.h>

#define PKTGEN_MAX_STREAMS 16
#define PKTGEN_MAX_CPUS 1024
#define PKTGEN_MAX_FRAME 1514

struct pktgen_stream {
	__u32 frame_len;	    /* the template's length */
	__u32 src_addr_off;	    /* first byte of the source address */
	__u32 src_words;	    /* 1 (IPv4) or 4 (IPv6) */
	__u32 ipv4_csum_off;	    /* IPv4 header checksum; 0 for IPv6 */
	__u32 ipv4_id_off;	    /* IPv4 identification; 0 for IPv6 */
	__u32 l4_csum_off;	    /* TCP/UDP checksum; 0 when there is no L4 header */
	__u32 l4_csum_zero_is_ffff; /* UDP: a computed 0 is sent as 0xffff */
	__u32 sport_off;	    /* L4 source port; 0: absent */
	__u32 tcp_seq_off;	    /* TCP sequence number; 0: absent */
	__u32 pad;
	__u32 src_base[4]; /* network byte order */
	__u32 src_mask[4]; /* bits drawn at random, network byte order */
};

#endif /* MXEDGE_TESTS_LOAD_PKTGEN_ABI_H */
