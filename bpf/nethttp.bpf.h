/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The sockets of Go net/http connections, as the gohttp collector learns
 * them: each request it sees (server or client, HTTP/1 or HTTP/2, TLS or
 * not) records its connection's descriptor here. The gotls and sockets
 * collectors leave these connections' bytes alone (gohttp reports their
 * requests whole): one request, one span. Because the first request seen on
 * each connection records the entry, a connection opened before the probes
 * were attached, or dialled by the program itself
 * (Transport.DialTLSContext), is learnt at its first request seen, in probes
 * that already run, never a new uprobe hit.
 *
 * Each object declares the map; user space gives the three collectors one
 * instance (gohttp.NewNetHTTPConns). An entry whose descriptor was closed
 * unseen and reused must not claim the new connection: the value names the
 * Go connection (the interface's data word: *tls.Conn or *net.TCPConn) and
 * the kernel's struct file, and readers compare what they know.
 */
#ifndef __PERISCOPE_NETHTTP_BPF_H__
#define __PERISCOPE_NETHTTP_BPF_H__

struct nethttp_key {
	__u32 tgid;
	__s32 fd;
};

struct nethttp_conn {
	__u64 conn; /* the Go connection under net/http (net.Conn's data word) */
	__u64 file; /* the struct file the descriptor named */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nethttp_key);
	__type(value, struct nethttp_conn);
} nethttp_conns SEC(".maps");

/* nethttp_lookup returns the net/http connection recorded for descriptor fd
 * of process tgid, or 0. */
static __always_inline struct nethttp_conn *nethttp_lookup(__u32 tgid, __s32 fd)
{
	struct nethttp_key k = {.tgid = tgid, .fd = fd};
	return bpf_map_lookup_elem(&nethttp_conns, &k);
}

/* nethttp_forget drops the entry of a closed descriptor. */
static __always_inline void nethttp_forget(__u32 tgid, __s32 fd)
{
	struct nethttp_key k = {.tgid = tgid, .fd = fd};
	bpf_map_delete_elem(&nethttp_conns, &k);
}

/* nethttp_supersede tells user space, in order with what the collector
 * sent of connection conn (socket fd), that gohttp reports it from now on:
 * what was sent is dropped without spans (a request whose bytes were
 * copied before gohttp saw it would otherwise end as a second span). */
static __always_inline void nethttp_supersede(__u64 conn, __s32 fd)
{
	struct close_event e = {};
	fill_header(&e.hdr, EVENT_CLOSE);
	e.conn = conn;
	e.fd = fd;
	e.flags = CLOSE_SUPERSEDED;
	output(&e, sizeof(e));
}

#endif /* __PERISCOPE_NETHTTP_BPF_H__ */
