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
#else
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define MXEDGE_UNROLL
#endif

#endif /* MXEDGE_BPF_PORTABLE_H */
