/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * SSL* to socket, for the OpenSSL collector (bpf/openssl.bpf.c explains the
 * nested-syscall correlation): while a thread is inside SSL_*, the first
 * read/write-family syscall it makes on a TCP socket names the SSL's fd.
 *
 * The syscall side runs in the agent's one pair of raw syscall programs
 * (bpf/syshooks.bpf.h) on the OpenSSL collector's maps and ring, which are
 * passed in, so that both objects share this code.
 */
#ifndef __PERISCOPE_SSLBIND_BPF_H__
#define __PERISCOPE_SSLBIND_BPF_H__

struct ssl_key {
	__u64 ssl;
	__u32 tgid;
	__u32 _pad;
};

/* The maps of the OpenSSL collector the syscall side uses. */
#define SSL_BIND_MAPS(name)                                              \
	/* Thread (pid_tgid) -> SSL* whose socket the next socket syscall \
	 * names. */                                                     \
	struct {                                                         \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);                     \
		__uint(max_entries, 16384);                              \
		__type(key, __u64);                                      \
		__type(value, __u64);                                    \
	} name##pending_bind SEC(".maps");                               \
	struct {                                                         \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);                     \
		__uint(max_entries, 65536);                              \
		__type(key, struct ssl_key);                             \
		__type(value, __s32);                                    \
	} name##ssl_fd SEC(".maps");                                     \
	struct {                                                         \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);                     \
		__uint(max_entries, 65536);                              \
		__type(key, struct fd_key);                              \
		__type(value, __u64);                                    \
	} name##fd_ssl SEC(".maps");                                     \
	/* SSL*s whose handshake this agent saw (SSL_do_handshake) and    \
	 * that are not bound yet: their connection is seen from its      \
	 * start. */                                                     \
	struct {                                                         \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);                     \
		__uint(max_entries, 16384);                              \
		__type(key, struct ssl_key);                             \
		__type(value, __u8);                                     \
	} name##ssl_fresh SEC(".maps")

/* The maps and ring one object reaches them by. */
struct ssl_bind_maps {
	void *pending_bind, *ssl_fd, *fd_ssl, *ssl_fresh, *ring, *counters;
	__u64 wakeup; /* flags of bpf_ringbuf_submit */
};

/* ssl_bind_syscall binds the SSL* a thread's SSL_* call waits to name
 * (pending_bind) to descriptor fd, if fd is a TCP socket. */
static __always_inline void ssl_bind_syscall(struct ssl_bind_maps *m, __u64 id, __s32 fd)
{
	__u64 *pending = bpf_map_lookup_elem(m->pending_bind, &id);
	if (!pending)
		return;
	__u64 ssl = *pending;
	struct ssl_key k = {.ssl = ssl, .tgid = id >> 32};
	__s32 *cur = bpf_map_lookup_elem(m->ssl_fd, &k);
	if (cur && *cur == fd) {
		bpf_map_delete_elem(m->pending_bind, &id);
		bpf_map_delete_elem(m->ssl_fresh, &k);
		return;
	}

	struct bind_event b = {};
	if (!sock_tuple(fd, &b.tuple))
		return; /* a pipe or a log file: keep waiting for the socket */
	bpf_map_delete_elem(m->pending_bind, &id);

	bpf_map_update_elem(m->ssl_fd, &k, &fd, BPF_ANY);
	struct fd_key fk = {.tgid = id >> 32, .fd = fd};
	bpf_map_update_elem(m->fd_ssl, &fk, &ssl, BPF_ANY);

	/* An SSL* whose handshake was seen is seen from its start: request
	 * ordinals count from its first request at both ends. One that was
	 * not (open before the agent started) has none. */
	b.flags = BIND_START_KNOWN;
	if (bpf_map_lookup_elem(m->ssl_fresh, &k)) {
		b.flags |= BIND_STREAM_START;
		bpf_map_delete_elem(m->ssl_fresh, &k);
	}
	fill_header(&b.hdr, EVENT_BIND);
	b.conn = ssl;
	b.fd = fd;
	output_to(m->ring, m->counters, &b, sizeof(b), m->wakeup);
}

/* ssl_bind_close reports the close of a descriptor bound to an SSL*. */
static __always_inline void ssl_bind_close(struct ssl_bind_maps *m, __u32 tgid, __s32 fd)
{
	struct fd_key fk = {.tgid = tgid, .fd = fd};
	__u64 *ssl = bpf_map_lookup_elem(m->fd_ssl, &fk);
	if (!ssl)
		return;
	struct close_event c = {};
	fill_header(&c.hdr, EVENT_CLOSE);
	c.conn = *ssl;
	c.fd = fk.fd;
	struct ssl_key k = {.ssl = c.conn, .tgid = fk.tgid};
	__s32 *cur = bpf_map_lookup_elem(m->ssl_fd, &k);
	if (cur && *cur == fk.fd)
		bpf_map_delete_elem(m->ssl_fd, &k);
	bpf_map_delete_elem(m->fd_ssl, &fk);
	output_to(m->ring, m->counters, &c, sizeof(c), m->wakeup);
}

/* ssl_bind_free ends SSL* ssl of process tgid at SSL_free: the allocator
 * may give its address to the process's next SSL*, which must not continue
 * this one's connection (a session on a Unix socket is never bound, so no
 * close ends it). Its binding goes too, so that the close of its socket,
 * which often follows, cannot end the next session's. */
static __always_inline void ssl_bind_free(struct ssl_bind_maps *m, __u32 tgid, __u64 ssl)
{
	struct close_event c = {};
	fill_header(&c.hdr, EVENT_CLOSE);
	c.conn = ssl;
	c.fd = -1;
	struct ssl_key k = {.ssl = ssl, .tgid = tgid};
	__s32 *fd = bpf_map_lookup_elem(m->ssl_fd, &k);
	if (fd) {
		struct fd_key fk = {.tgid = tgid, .fd = *fd};
		__u64 *bound = bpf_map_lookup_elem(m->fd_ssl, &fk);
		if (bound && *bound == ssl)
			bpf_map_delete_elem(m->fd_ssl, &fk);
		c.fd = fk.fd;
		bpf_map_delete_elem(m->ssl_fd, &k);
	}
	bpf_map_delete_elem(m->ssl_fresh, &k); /* a handshake never bound */
	output_to(m->ring, m->counters, &c, sizeof(c), m->wakeup);
}

#endif /* __PERISCOPE_SSLBIND_BPF_H__ */
