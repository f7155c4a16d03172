/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* The data record of a TLS library's plaintext (openssl, gotls). */
#ifndef __PERISCOPE_PLAINTEXT_BPF_H__
#define __PERISCOPE_PLAINTEXT_BPF_H__

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

/* emit_plaintext sends the n bytes at buf that connection conn (socket
 * fd, or -1) moved in direction dir: the first DATA_CAP of them, and the
 * last TAIL_CAP of a larger call. */
static __always_inline void emit_plaintext(__u64 conn, __s32 fd, __u32 dir, __u64 buf, __u64 n)
{
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
