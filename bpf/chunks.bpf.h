/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Large calls of protocols made of many small messages, copied whole. */
#ifndef __PERISCOPE_CHUNKS_BPF_H__
#define __PERISCOPE_CHUNKS_BPF_H__

/* A call moves at most DATA_CAP bytes in one record. A protocol of many
 * small messages needs them all for its spans (a pgx batch of 50
 * statements is one 4.9 KB write, a pipelined Redis reply one read of
 * tens of KiB), so a call on such a connection is copied in up to
 * MAX_CHUNKS records of DATA_CAP bytes, each a call of its own to user
 * space: the records of one call are consecutive in the ring and the
 * decoder reads them as one stream. The last record carries what is left
 * of the call's size, with the call's last TAIL_CAP bytes when more than
 * it carries is left; that call is counted COUNTER_TRUNCATED_CALLS. Other
 * protocols' large calls are bodies their parsers skip: one record. */
#define MAX_CHUNKS 16

/* chunked_proto reports whether connections of protocol proto (enum
 * proto) have their large calls copied in chunks. */
static __always_inline bool chunked_proto(__u8 proto)
{
	return proto == PROTO_POSTGRES || proto == PROTO_MYSQL || proto == PROTO_REDIS;
}

/* output_chunks sends the size bytes at buf (one buffer) as up to
 * MAX_CHUNKS records built in e, whose header and connection fields are
 * set. */
static __always_inline void output_chunks(struct data_event *e, __u64 buf, __u64 size)
{
	__u32 seq = e->seq;
	for (__u32 i = 0; i < MAX_CHUNKS; i++) {
		__u64 off = (__u64)i * DATA_CAP;
		e->seq = seq + (__u32)off;
		__u64 left = size - off;
		bool last = left <= DATA_CAP || i == MAX_CHUNKS - 1;
		__u32 n = left < DATA_CAP ? (__u32)left : DATA_CAP;
		e->size = !last ? DATA_CAP : left > 0xffffffff ? 0xffffffff : (__u32)left;
		e->captured = bpf_probe_read_user(e->data, n, (void *)(buf + off)) == 0 ? n : 0;
		e->tail_len = 0;
		if (left > n) {
			if (last && bpf_probe_read_user(e->tail, TAIL_CAP, (void *)(buf + size - TAIL_CAP)) == 0)
				e->tail_len = TAIL_CAP;
			if (last)
				count(COUNTER_TRUNCATED_CALLS);
		}
		__u32 captured = e->captured;
		if (captured > DATA_CAP)
			captured = DATA_CAP;
		output_data(e, captured);
		if (last)
			break;
	}
}

#endif /* __PERISCOPE_CHUNKS_BPF_H__ */
