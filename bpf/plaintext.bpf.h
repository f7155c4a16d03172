/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* The data record of a TLS library's plaintext (openssl, gotls). */
#ifndef __PERISCOPE_PLAINTEXT_BPF_H__
#define __PERISCOPE_PLAINTEXT_BPF_H__

#include "classify.bpf.h"
#include "chunks.bpf.h"

/* Data records are written in the ring (reserve_or_count), not built in a
 * per-CPU scratch: these are uprobe programs, which a preemptible kernel
 * can preempt (migration disabled, preemption not), and another task's
 * program on the same CPU would write into the same scratch, mixing two
 * processes' plaintext in one record. A call of at most SMALL_DATA bytes
 * gets a record of that size, not a full DATA_CAP one: the ring holds as
 * many small records as it did when they were copied at their length. */
#define SMALL_DATA 512

/* struct data_event up to its data (periscope.h), the part both sizes
 * share. */
struct data_event_head {
	struct event_header hdr;
	__u64 conn;
	__u32 dir;
	__u32 size;
	__u32 captured;
	__u32 tail_len;
	__s32 fd;
	__u32 goroutine; /* 0: TLS libraries' callers are keyed by their connection */
	__u32 seq;       /* 0: a TLS library's plaintext has no TCP sequence */
	__u32 flags;
	__u8 tail[TAIL_CAP];
};
_Static_assert(sizeof(struct data_event_head) == __builtin_offsetof(struct data_event, data),
	       "data_event_head must be data_event up to data");
_Static_assert(__builtin_offsetof(struct data_event_head, fd) == __builtin_offsetof(struct data_event, fd),
	       "data_event_head must be data_event up to data");

struct small_data_event {
	struct data_event_head head;
	__u8 data[SMALL_DATA];
};

struct full_data_event {
	struct data_event_head head;
	__u8 data[DATA_CAP];
};

/* fill_data completes the record e, whose data holds cap bytes, for the n
 * bytes at buf that connection conn (socket fd, or -1) moved in direction
 * dir, and submits it. */
#define fill_data(e, cap, conn_, fd_, dir_, buf, n)                                            \
	({                                                                                     \
		fill_header(&(e)->head.hdr, EVENT_DATA);                                     \
		(e)->head.conn = (conn_);                                                      \
		(e)->head.dir = (dir_);                                                        \
		(e)->head.size = (n) > 0xffffffff ? 0xffffffff : (__u32)(n);                   \
		(e)->head.tail_len = 0;                                                        \
		(e)->head.goroutine = 0;                                                       \
		(e)->head.seq = 0;                                                             \
		(e)->head.flags = 0;                                                           \
		(e)->head.fd = (fd_);                                                          \
		__u32 __captured = (n) > (cap) ? (cap) : (__u32)(n);                           \
		/* Bound the length where the helper takes it: older verifiers        \
		 * (6.1) lose a bound the compiler proved earlier on a spilled copy. */ \
		asm volatile("" : "+r"(__captured));                                           \
		if (__captured > (cap))                                                        \
			__captured = (cap);                                                    \
		if (bpf_probe_read_user((e)->data, __captured, (void *)(buf)) != 0)            \
			__captured = 0;                                                        \
		(e)->head.captured = __captured;                                               \
		if ((n) > (cap) &&                                                             \
		    bpf_probe_read_user((e)->head.tail, TAIL_CAP, (void *)((buf) + (n) - TAIL_CAP)) == 0) \
			(e)->head.tail_len = TAIL_CAP;                                         \
		submit(e);                                                                     \
	})

/* The protocol (enum proto) of a connection's plaintext, classified from
 * its first call, so that a database connection's large calls are copied
 * in chunks (bpf/chunks.bpf.h). A protocol told only later (MySQL's
 * plaintext starts mid-handshake) stays PROTO_UNKNOWN: one record a call. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct plain_key);
	__type(value, __u8);
} plain_protos SEC(".maps");

/* chunked_conn reports whether connection conn's large calls are copied in
 * chunks, classifying it from the n bytes at buf on its first call. */
static __always_inline bool chunked_conn(__u64 conn, __u64 buf, __u64 n)
{
	struct plain_key k = {.conn = conn, .tgid = bpf_get_current_pid_tgid() >> 32};
	__u8 *p = bpf_map_lookup_elem(&plain_protos, &k);
	if (p)
		return chunked_proto(*p);
	__u8 b[CLASSIFY_BYTES] = {};
	__u32 got = n < CLASSIFY_BYTES ? (__u32)n : CLASSIFY_BYTES;
	if (bpf_probe_read_user(b, got, (void *)buf) != 0)
		got = 0;
	__u8 proto = classify(b, got);
	bpf_map_update_elem(&plain_protos, &k, &proto, BPF_ANY);
	return chunked_proto(proto);
}

/* emit_plaintext_chunks sends the n bytes at buf in up to MAX_CHUNKS full
 * records (bpf/chunks.bpf.h). */
static __always_inline void emit_plaintext_chunks(__u64 conn, __s32 fd, __u32 dir, __u64 buf, __u64 n)
{
	for (__u32 i = 0; i < MAX_CHUNKS; i++) {
		__u64 off = (__u64)i * DATA_CAP;
		__u64 left = n - off;
		bool last = left <= DATA_CAP || i == MAX_CHUNKS - 1;
		struct full_data_event *e = reserve_or_count(struct full_data_event);
		if (!e)
			return;
		if (last && left > DATA_CAP)
			count(COUNTER_TRUNCATED_CALLS);
		fill_data(e, DATA_CAP, conn, fd, dir, buf + off, last ? left : DATA_CAP);
		if (last)
			break;
	}
}

/* emit_plaintext sends the n bytes at buf that connection conn (socket
 * fd, or -1) moved in direction dir: the first DATA_CAP of them, and the
 * last TAIL_CAP of a larger call; all of a database connection's call up
 * to MAX_CHUNKS records. */
static __always_inline void emit_plaintext(__u64 conn, __s32 fd, __u32 dir, __u64 buf, __u64 n)
{
	if (chunked_conn(conn, buf, n) && n > DATA_CAP) {
		emit_plaintext_chunks(conn, fd, dir, buf, n);
		return;
	}
	if (n <= SMALL_DATA) {
		struct small_data_event *e = reserve_or_count(struct small_data_event);
		if (e)
			fill_data(e, SMALL_DATA, conn, fd, dir, buf, n);
		return;
	}
	struct full_data_event *e = reserve_or_count(struct full_data_event);
	if (e)
		fill_data(e, DATA_CAP, conn, fd, dir, buf, n);
}

#endif /* __PERISCOPE_PLAINTEXT_BPF_H__ */
