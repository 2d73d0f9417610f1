/* portable.h: what lets parsing.h, steering.h, rate_limit.h and classifier.h compile both as BPF
 * (clang -target bpf, for xdp_smtp.bpf.c) and as ordinary user-space C (GCC or clang, for the DPDK
 * fast path in dataplane/dpdk/), so that the two fast paths run one implementation of the
 * classifier, not two copies. Only UAPI and libbpf headers are used on either side.
 */
#ifndef MXEDGE_BPF_PORTABLE_H
#define MXEDGE_BPF_PORTABLE_H

#include <linux/types.h>

#include <bpf/bpf_endian.h>

#ifdef __bpf__
#include <bpf/bpf_helpers.h>
/* The verifier wants bounded loops it can see; clang unrolls them. */
#define MXEDGE_UNROLL _Pragma("unroll")
/* Hides what the compiler knows about x, so that a bounds check it would drop as always true stays
 * in the program for the verifier (6.1's loses bounds through 64-bit multiply-shift). */
#define MXEDGE_OPAQUE(x) asm volatile("" : "+r"(x))
/* A 16-bit field after bpf_ntohs() is bounded again by an AND the compiler cannot drop: the verifier
 * of older kernels (Debian 12's 6.1, the appliance's) does not track bounds through a byte swap, and
 * rejects "pkt pointer + unbounded scalar" otherwise. */
#define MXEDGE_BOUND16(x)        \
	do {                     \
		MXEDGE_OPAQUE(x); \
		(x) &= 0xffff;   \
	} while (0)
#else
#define MXEDGE_BOUND16(x) ((void)0)
#define MXEDGE_OPAQUE(x) ((void)0)
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define MXEDGE_UNROLL
#endif

#endif /* MXEDGE_BPF_PORTABLE_H */
