/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The Go crypto/tls collector's connections (bpf/gotls.bpf.c), and the end
 * of one at close(2) of its socket. The close is seen by the agent's one
 * pair of syscall programs (bpf/syshooks.bpf.h), on the gotls collector's
 * maps and ring, which are passed in.
 */
#ifndef __PERISCOPE_GOTLSCONN_BPF_H__
#define __PERISCOPE_GOTLSCONN_BPF_H__

struct conn_key {
	__u64 conn; /* *tls.Conn */
	__u32 tgid;
	__u32 _pad;
};

/* conn_state.flags */
#define CONN_NETHTTP 1 /* net/http's: the gohttp collector reports it */
#define CONN_BOUND 2   /* its bind record was sent: its close is reported */

struct conn_state {
	__s32 fd;
	__u32 flags;
	__u64 marked; /* bpf_ktime_get_ns of an FD_UNKNOWN mark */
};

/* The gotls collector's maps and ring a close touches. */
struct gotls_close_maps {
	void *conns, *fd_conn, *plain_protos, *ring, *counters;
};

/* gotls_close ends the connection whose socket is descriptor fd of process
 * tgid, reporting its close if its bind record was sent. */
static __always_inline void gotls_close(struct gotls_close_maps *m, __u32 tgid, __s32 fd)
{
	struct fd_key fk = {.tgid = tgid, .fd = fd};
	__u64 *cp = bpf_map_lookup_elem(m->fd_conn, &fk);
	if (!cp)
		return;
	struct conn_key k = {.conn = *cp, .tgid = tgid};
	bpf_map_delete_elem(m->fd_conn, &fk);
	struct conn_state *st = bpf_map_lookup_elem(m->conns, &k);
	if (!st || st->fd != fd)
		return;
	__u32 flags = st->flags;
	bpf_map_delete_elem(m->conns, &k);
	nethttp_forget(tgid, fd);
	struct plain_key pk = {.conn = k.conn, .tgid = tgid};
	bpf_map_delete_elem(m->plain_protos, &pk);
	if (!(flags & CONN_BOUND))
		return;
	struct close_event e = {};
	fill_header(&e.hdr, EVENT_CLOSE);
	e.conn = k.conn;
	e.fd = fd;
	output_to(m->ring, m->counters, &e, sizeof(e), BPF_RB_NO_WAKEUP);
}

#endif /* __PERISCOPE_GOTLSCONN_BPF_H__ */
