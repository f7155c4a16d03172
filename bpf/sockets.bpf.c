// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Plaintext of TCP sockets at the syscall boundary, for every runtime.
 *
 * Every read/write-family syscall of the node runs these programs, so the
 * common case leaves after one map lookup: fds caches, per (process, fd),
 * whether the descriptor is a TCP socket (decided once through CO-RE) and
 * which protocol its connection speaks (decided from the first bytes of a
 * call, bpf/classify.bpf.h). Files, pipes, UNIX and UDP sockets stop there.
 * Bytes are copied only for connections whose protocol a parser in user
 * space handles (parsed_protos); calls on other TCP connections are
 * counted.
 *
 * Writes are copied at syscall entry (the data is complete there, and is in
 * the ring before it can reach a peer on this node); a write the kernel
 * took only part of is corrected at exit by a write_result record, as for
 * SSL_write. Reads are copied at exit, where the kernel has filled the
 * buffer. sendfile moves bytes user space never sees: only its size is
 * reported.
 *
 * The cache is invalidated where a descriptor number can change what it
 * names: close, dup2/dup3 onto it, and the descriptors socket(), accept()
 * and dup() return. The records are those of the OpenSSL collector (data,
 * bind, write_result, close), keyed by the socket instead of an SSL*.
 */
#include "common.bpf.h"
#include "sock.bpf.h"
#include "classify.bpf.h"
#include "chunks.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Bytes copied per call, at most DATA_CAP (set by user space). */
const volatile __u32 capture_bytes = DATA_CAP;
/* Protocols whose bytes are copied: a bit per enum proto. */
const volatile __u32 parsed_protos = 1 << PROTO_HTTP1;
/* When set, only processes in `selected` are traced. */
const volatile __u8 filter_selected = 0;

/* Keys of socket connections: the socket's address, marked apart from the
 * SSL* pointers of the OpenSSL collector and the keys of whole requests
 * (bits 62 and 63, correlator/request.go). */
#define CONN_SOCKET (1ULL << 61)
#define CONN_ADDR_MASK ((1ULL << 48) - 1)

/* Walked iovecs of readv/writev/recvmsg/sendmsg. */
#define MAX_IOV 16

enum fd_kind {
	FD_OTHER = 1, /* not a TCP socket */
	FD_TCP = 2,
};

struct fd_key {
	__u32 tgid;
	__s32 fd;
};

struct fd_state {
	__u64 conn;  /* CONN_SOCKET | socket address */
	__u64 file;  /* the struct file the descriptor named when cached */
	__u8 kind;   /* enum fd_kind */
	__u8 proto;  /* enum proto */
	__u8 bound;  /* the bind record was sent */
	__u8 tries;  /* calls that did not classify */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fd_key);
	__type(value, struct fd_state);
} fds SEC(".maps");

enum call_kind {
	CALL_BUF = 1,      /* buf, count */
	CALL_IOV = 2,      /* iovec array, count */
	CALL_MSG = 3,      /* struct user_msghdr */
	CALL_SENDFILE = 4, /* bytes only */
	CALL_MMSG = 5,     /* one struct mmsghdr (recvmmsg/sendmmsg of one message) */
};

/* A call between its entry and its exit, by thread. */
struct call {
	__u64 buf;
	__u64 count;
	__u64 requested; /* bytes a write offered (copied at entry) */
	__s32 fd;
	__u8 kind; /* enum call_kind */
	__u8 dir;
	__u8 copied; /* the write's data was sent at entry */
	__u8 skip;   /* enum skip of the process */
	/* A read user space found blocked when the agent started (its entry
	 * was missed): fd and buf are the syscall's arguments as
	 * /proc/PID/task/TID/syscall showed them, nr its number; only the
	 * exit of that syscall takes it. */
	__u8 found;
	__u8 _pad1[3];
	__u32 nr;
	__u32 _pad;
	__u64 mmsg; /* CALL_MMSG: the struct mmsghdr, whose msg_len is the size */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct call);
} calls SEC(".maps");

/* What skip_pids holds for a process. */
enum skip {
	SKIP_NONE = 0,
	SKIP_ALL = 1,  /* no socket traced: the agent itself */
	SKIP_HTTP = 2, /* HTTP connections not traced: another collector sees them whole */
};

/* Processes whose sockets are not traced (SKIP_ALL: the agent itself) or
 * whose HTTP connections are not (SKIP_HTTP: Go programs whose net/http the
 * gohttp collector probes; it sees their requests whole, but not their
 * database calls). Written by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} skip_pids SEC(".maps");

/* When filter_selected is set: the processes discovery has decided on,
 * selected or not. A process it has not seen yet (started a moment ago) is
 * traced, so that a short-lived client is not missed; user space drops what
 * such a process sent if it turns out not to be selected. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8); /* 1: selected, 0: not */
} selected SEC(".maps");

/* Local or remote ports whose connections are not traced. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} ignore_ports SEC(".maps");

/* Processes that sent records, so that their exit is reported in order
 * with their data. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} sock_procs SEC(".maps");

/* A data record and room for a copy that starts near its end. */
struct scratch_rec {
	struct data_event e;
	__u8 spill[DATA_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_rec);
} scratch SEC(".maps");

struct iovec_user {
	__u64 base;
	__u64 len;
};

/* struct mmsghdr is a struct user_msghdr (56 bytes on 64-bit ABIs)
 * followed by msg_len. */
#define MMSG_LEN_OFF 56

/* The start of struct user_msghdr (a stable ABI). */
struct msghdr_user {
	__u64 name;
	__s32 namelen;
	__s32 _pad;
	__u64 iov;
	__u64 iovlen;
};

static __always_inline bool ignored_port(__u16 port)
{
	return port && bpf_map_lookup_elem(&ignore_ports, &port);
}

/* fd_state returns the cached state of descriptor fd of process tgid,
 * deciding it on first sight. */
static __always_inline struct fd_state *fd_state(__u32 tgid, __s32 fd)
{
	struct fd_key k = {.tgid = tgid, .fd = fd};
	struct fd_state *s = bpf_map_lookup_elem(&fds, &k);
	if (s)
		return s;
	struct fd_state n = {.kind = FD_OTHER};
	struct file *f = fd_file(fd);
	n.file = (__u64)f;
	struct sock *sk = (struct sock *)file_sock(f);
	if (sk) {
		n.kind = FD_TCP;
		n.conn = CONN_SOCKET | ((__u64)sk & CONN_ADDR_MASK);
		__u16 lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		__u16 rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (ignored_port(lport) || ignored_port(rport))
			n.proto = PROTO_IGNORED;
	}
	bpf_map_update_elem(&fds, &k, &n, BPF_NOEXIST);
	return bpf_map_lookup_elem(&fds, &k);
}

/* traced_process returns whether process tgid is traced, and sets *skip. */
static __always_inline bool traced_process(__u32 tgid, __u8 *skip)
{
	__u8 *sk = bpf_map_lookup_elem(&skip_pids, &tgid);
	*skip = sk ? *sk : SKIP_NONE;
	if (*skip == SKIP_ALL)
		return false;
	if (!filter_selected)
		return true;
	__u8 *sel = bpf_map_lookup_elem(&selected, &tgid);
	return !sel || *sel;
}

static __always_inline bool parsed(__u8 proto) { return proto < 32 && (parsed_protos & (1U << proto)); }

/* first_bytes reads the first bytes a call moves. */
static __always_inline __u32 first_bytes(struct call *c, __u8 *b, __u64 n)
{
	__u64 src = c->buf;
	if (c->kind == CALL_IOV || c->kind == CALL_MSG || c->kind == CALL_MMSG) {
		struct iovec_user v;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)c->buf) != 0)
			return 0;
		src = v.base;
		if (v.len < n)
			n = v.len;
	} else if (c->kind != CALL_BUF) {
		return 0;
	}
	if (n > CLASSIFY_BYTES)
		n = CLASSIFY_BYTES;
	if (n == 0 || bpf_probe_read_user(b, CLASSIFY_BYTES, (void *)src) != 0)
		return 0;
	return n;
}

/* settle classifies a connection from a call of n bytes, and reports
 * whether its bytes are wanted. */
static __always_inline bool settle(struct fd_state *s, struct call *c, __u64 n)
{
	if (s->proto == PROTO_UNKNOWN) {
		__u8 b[CLASSIFY_BYTES] = {};
		__u32 got = first_bytes(c, b, n);
		__u8 p = classify(b, got);
		if (c->skip == SKIP_HTTP && (p == PROTO_HTTP1 || p == PROTO_HTTP2))
			p = PROTO_IGNORED;
		if (p != PROTO_UNKNOWN) {
			s->proto = p;
		} else if (++s->tries >= CLASSIFY_TRIES) {
			s->proto = PROTO_OTHER;
			count(COUNTER_UNCLASSIFIED_CONNS);
		}
	}
	if (parsed(s->proto))
		return true;
	count(COUNTER_UNPARSED_CALLS);
	return false;
}

/* send_bind reports the socket of a connection at its first call whose
 * bytes are wanted: a write at its entry (moved 0), a read at its exit
 * (moved: the bytes it took). */
static __always_inline void send_bind(struct fd_state *s, __s32 fd, bool write, __u64 moved)
{
	if (s->bound)
		return;
	s->bound = 1;
	struct bind_event b = {};
	struct sock *sk = (struct sock *)fd_sock(fd);
	if (!sk)
		return;
	sk_tuple(sk, &b.tuple);
	fill_header(&b.hdr, EVENT_BIND);
	b.conn = s->conn;
	b.fd = fd;
	b.flags = BIND_PLAINTEXT;
	if (sk_stream_start(sk, write, moved))
		b.flags |= BIND_STREAM_START;
	output(&b, sizeof(b));
	__u32 tgid = b.hdr.pid;
	if (!bpf_map_lookup_elem(&sock_procs, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&sock_procs, &tgid, &one, BPF_ANY);
	}
}

/* copy_iov copies up to want bytes from an iovec array into dst; it
 * returns the bytes copied and sets *last to the last iovec read. */
static __always_inline __u32 copy_iov(__u8 *dst, __u64 iov, __u64 iovcnt, __u32 want, struct iovec_user *last)
{
	__u32 off = 0;
#pragma unroll
	for (int i = 0; i < MAX_IOV; i++) {
		if (i >= iovcnt)
			break;
		struct iovec_user v;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(v))) != 0)
			break;
		*last = v;
		if (off >= want)
			continue;
		__u32 n = want - off;
		if (v.len < n)
			n = v.len;
		if (n > DATA_CAP)
			n = DATA_CAP;
		off &= DATA_CAP - 1;
		if (bpf_probe_read_user(dst + off, n, (void *)v.base) != 0)
			break;
		off += n;
	}
	return off;
}

/* The helpers current_goroutine needs, by number (CO-RE tells whether the
 * running kernel has them: bpf_get_current_task_btf 5.11, bpf_task_pt_regs
 * 5.15). */
enum bpf_func_id {
	BPF_FUNC_get_current_task_btf = 158,
	BPF_FUNC_task_pt_regs = 175,
};

/* current_goroutine returns the low 32 bits of the runtime.g of the Go
 * code that made this syscall (Go keeps it in a register, and the
 * syscall path does not touch it), or 0 on kernels without the helpers.
 * gohttp keys requests by the same g: the correlator links a database call
 * to the server request its goroutine serves. */
static __always_inline __u32 current_goroutine(void)
{
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs) ||
	    !bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 g = 0;
	if (!regs || bpf_probe_read_kernel(&g, sizeof(g), &GO_G(regs)) != 0)
		return 0;
	return (__u32)g;
}

/* emit sends a data record of a call that moved size bytes. */
static __always_inline void emit(struct fd_state *s, struct call *c, __u64 size)
{
	__u32 zero = 0;
	struct scratch_rec *r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		return;
	struct data_event *e = &r->e;
	fill_header(&e->hdr, EVENT_DATA);
	e->conn = s->conn;
	e->dir = c->dir;
	e->size = size > 0xffffffff ? 0xffffffff : (__u32)size;
	e->fd = c->fd;
	e->tail_len = 0;
	e->goroutine = c->skip == SKIP_HTTP ? current_goroutine() : 0;
	__u32 want = capture_bytes;
	if (want > DATA_CAP)
		want = DATA_CAP;
	if (size < want)
		want = size;
	__u32 captured = 0;
	__u64 tail_from = 0;
	if (c->kind == CALL_BUF && size > DATA_CAP && want == DATA_CAP && chunked_proto(s->proto)) {
		output_chunks(e, c->buf, size);
		return;
	}
	if (c->kind == CALL_BUF) {
		if (bpf_probe_read_user(e->data, want, (void *)c->buf) == 0)
			captured = want;
		tail_from = c->buf + size - TAIL_CAP;
	} else if (c->kind == CALL_IOV || c->kind == CALL_MSG || c->kind == CALL_MMSG) {
		struct iovec_user last = {};
		captured = copy_iov(e->data, c->buf, c->count, want, &last);
		/* The last iovec ends the call only if the call moved them all
		 * (a write: its size is their sum). */
		if (c->dir == DIR_WRITE && last.len >= TAIL_CAP)
			tail_from = last.base + last.len - TAIL_CAP;
	}
	if (captured > DATA_CAP)
		captured = DATA_CAP;
	e->captured = captured;
	/* After MySQL's SSL request the connection carries TLS records: its
	 * bytes are no longer copied (counted as unparsed calls). The client
	 * knows from its request; the server from the ClientHello it reads
	 * next (that one record still reaches user space, which drops it). */
	if (s->proto == PROTO_MYSQL &&
	    (mysql_ssl_request(e->data, captured) || (c->dir == DIR_READ && tls_handshake_record(e->data, captured))))
		s->proto = PROTO_TLS;
	if (size > captured && tail_from && size >= TAIL_CAP) {
		if (bpf_probe_read_user(e->tail, TAIL_CAP, (void *)tail_from) == 0)
			e->tail_len = TAIL_CAP;
	}
	output(e, __builtin_offsetof(struct data_event, data) + captured);
}

/* forget drops the cached state of a descriptor that now names something
 * else or nothing, reporting the close of a traced connection. */
static __always_inline void forget(__u32 tgid, __s32 fd)
{
	struct fd_key k = {.tgid = tgid, .fd = fd};
	struct fd_state *s = bpf_map_lookup_elem(&fds, &k);
	if (!s)
		return;
	if (s->bound) {
		struct close_event c = {};
		fill_header(&c.hdr, EVENT_CLOSE);
		c.conn = s->conn;
		c.fd = fd;
		output(&c, sizeof(c));
	}
	bpf_map_delete_elem(&fds, &k);
}

/* fresh returns the state of a TCP connection's descriptor after checking
 * that the descriptor still names the file it was cached for: a close the
 * programs missed (close_range beyond its walk, close-on-exec, a reused PID)
 * then a new file on the number must not pass for the old connection. Only
 * connections whose bytes are copied pay the check. It returns 0 when the
 * descriptor no longer names a TCP socket of a wanted protocol. */
static __always_inline struct fd_state *fresh(struct fd_state *s, __u32 tgid, __s32 fd)
{
	if (s->file == (__u64)fd_file(fd))
		return s;
	forget(tgid, fd);
	s = fd_state(tgid, fd);
	if (!s || s->kind != FD_TCP || (s->proto != PROTO_UNKNOWN && !parsed(s->proto)))
		return 0;
	return s;
}

/* on_enter starts a call on fd. */
static __always_inline int on_enter(__s32 fd, __u8 dir, __u8 kind, __u64 buf, __u64 len)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct fd_state *s = fd_state(tgid, fd);
	if (!s || s->kind != FD_TCP)
		return 0;
	if (s->proto != PROTO_UNKNOWN && !parsed(s->proto)) {
		count(COUNTER_UNPARSED_CALLS);
		return 0;
	}
	__u8 skip;
	if (!traced_process(tgid, &skip))
		return 0;
	s = fresh(s, tgid, fd);
	if (!s)
		return 0;
	struct call c = {.buf = buf, .count = len, .fd = fd, .kind = kind, .dir = dir, .skip = skip};
	if (kind == CALL_MMSG) {
		/* The message vector's length is len: one message is a
		 * recvmsg/sendmsg whose size comes back in msg_len. */
		if (len != 1)
			return 0;
		c.mmsg = buf;
	}
	if (kind == CALL_MSG || kind == CALL_MMSG) {
		struct msghdr_user m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)buf) != 0)
			return 0;
		c.buf = m.iov;
		c.count = m.iovlen;
	}
	if (dir == DIR_WRITE && kind != CALL_SENDFILE) {
		__u64 size = len;
		if (kind != CALL_BUF) {
			/* The size of a vectored write: the sum of its iovecs. */
			size = 0;
#pragma unroll
			for (int i = 0; i < MAX_IOV; i++) {
				struct iovec_user v;
				if (i >= c.count || bpf_probe_read_user(&v, sizeof(v), (void *)(c.buf + i * sizeof(v))) != 0)
					break;
				size += v.len;
			}
		}
		if (size == 0 || !settle(s, &c, size))
			return 0;
		send_bind(s, fd, true, 0);
		emit(s, &c, size);
		c.requested = size;
		c.copied = 1;
	}
	bpf_map_update_elem(&calls, &id, &c, BPF_ANY);
	return 0;
}

/* found_read completes a read user space found blocked when the agent
 * started (its entry was missed; see struct call) at the exit of syscall
 * nr, and returns the state of its descriptor if its bytes are wanted. */
static __always_inline struct fd_state *found_read(struct call *c, __u32 tgid, long nr)
{
	__u8 skip;
	if (nr != c->nr || !traced_process(tgid, &skip))
		return 0;
	c->skip = skip;
	if (c->kind == CALL_MSG) {
		struct msghdr_user m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)c->buf) != 0)
			return 0;
		c->buf = m.iov;
		c->count = m.iovlen;
	}
	struct fd_state *s = fd_state(tgid, c->fd);
	if (!s || s->kind != FD_TCP || (s->proto != PROTO_UNKNOWN && !parsed(s->proto)))
		return 0;
	return s;
}

/* on_exit ends a call: a read's bytes are copied, a write's result
 * checked. */
static __always_inline int on_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call *p = bpf_map_lookup_elem(&calls, &id);
	if (!p)
		return 0;
	struct call c = *p;
	bpf_map_delete_elem(&calls, &id);
	struct fd_state *s;
	if (c.found) {
		s = found_read(&c, id >> 32, ctx->id);
	} else {
		struct fd_key k = {.tgid = id >> 32, .fd = c.fd};
		s = bpf_map_lookup_elem(&fds, &k);
	}
	if (!s)
		return 0;
	long ret = ctx->ret;
	if (c.kind == CALL_MMSG) {
		/* The number of messages moved: the bytes are in msg_len. */
		__u32 n = 0;
		if (ret == 1 && bpf_probe_read_user(&n, sizeof(n), (void *)(c.mmsg + MMSG_LEN_OFF)) != 0)
			n = 0;
		ret = ret == 1 ? n : ret;
	}
	if (c.copied) {
		write_result(s->conn, c.requested, ret > 0 ? ret : 0);
		return 0;
	}
	if (ret <= 0)
		return 0;
	if (c.kind == CALL_SENDFILE) {
		if (s->proto == PROTO_HTTP1 && s->bound)
			emit(s, &c, ret);
		return 0;
	}
	if (!settle(s, &c, ret))
		return 0;
	send_bind(s, c.fd, false, ret);
	emit(s, &c, ret);
	return 0;
}

#define ARG(n) (ctx->args[n])
#define TGID() ((__u32)(bpf_get_current_pid_tgid() >> 32))

SEC("tracepoint/syscalls/sys_enter_read")
int sys_enter_read(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_READ, CALL_BUF, ARG(1), ARG(2)); }

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int sys_enter_recvfrom(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_READ, CALL_BUF, ARG(1), ARG(2)); }

SEC("tracepoint/syscalls/sys_enter_readv")
int sys_enter_readv(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_READ, CALL_IOV, ARG(1), ARG(2)); }

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int sys_enter_recvmsg(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_READ, CALL_MSG, ARG(1), 0); }

/* recvmmsg(fd, msgvec, vlen, flags, timeout) and sendmmsg(fd, msgvec,
 * vlen, flags): a vector of one message only (more is a UDP idiom;
 * on TCP one message per call is the norm). */
SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int sys_enter_recvmmsg(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_READ, CALL_MMSG, ARG(1), ARG(2)); }

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int sys_enter_sendmmsg(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_WRITE, CALL_MMSG, ARG(1), ARG(2)); }

SEC("tracepoint/syscalls/sys_enter_write")
int sys_enter_write(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_WRITE, CALL_BUF, ARG(1), ARG(2)); }

SEC("tracepoint/syscalls/sys_enter_sendto")
int sys_enter_sendto(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_WRITE, CALL_BUF, ARG(1), ARG(2)); }

SEC("tracepoint/syscalls/sys_enter_writev")
int sys_enter_writev(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_WRITE, CALL_IOV, ARG(1), ARG(2)); }

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int sys_enter_sendmsg(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_WRITE, CALL_MSG, ARG(1), 0); }

/* sendfile(out_fd, in_fd, offset, count): the socket is out_fd. */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int sys_enter_sendfile64(struct trace_event_raw_sys_enter *ctx) { return on_enter(ARG(0), DIR_WRITE, CALL_SENDFILE, 0, ARG(3)); }

/* One exit program serves every call: the entry recorded what it was. */
SEC("tracepoint/syscalls/sys_exit_io")
int sys_exit_io(struct trace_event_raw_sys_exit *ctx) { return on_exit(ctx); }

SEC("tracepoint/syscalls/sys_enter_close")
int sys_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	forget(TGID(), ARG(0));
	return 0;
}

/* dup2/dup3(oldfd, newfd): newfd is closed and names oldfd's file. */
SEC("tracepoint/syscalls/sys_enter_dup2")
int sys_enter_dup2(struct trace_event_raw_sys_enter *ctx)
{
	forget(TGID(), ARG(1));
	return 0;
}

/* close_range(first, last, flags) closes a range of descriptors, often
 * 3..~0U before an exec: the first CLOSE_RANGE_WALK of them are forgotten
 * (enough for most processes' tables); a TCP connection's descriptor
 * beyond is caught by fresh() when its number is reused. */
#define CLOSE_RANGE_WALK 64
#define CLOSE_RANGE_CLOEXEC (1U << 2)

SEC("tracepoint/syscalls/sys_enter_close_range")
int sys_enter_close_range(struct trace_event_raw_sys_enter *ctx)
{
	__u32 first = ARG(0), last = ARG(1);
	if (ARG(2) & CLOSE_RANGE_CLOEXEC)
		return 0;
	__u32 tgid = TGID();
	for (__u32 i = 0; i < CLOSE_RANGE_WALK; i++) {
		__u32 fd = first + i;
		if (fd < first || fd > last || fd > 0x7fffffff)
			break;
		forget(tgid, fd);
	}
	return 0;
}

/* socket(), accept(), accept4() and dup() return a descriptor whose number
 * may be cached as what it named before (a close the programs missed:
 * close-on-exec, or a process that reused a PID). */
SEC("tracepoint/syscalls/sys_exit_newfd")
int sys_exit_newfd(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret >= 0)
		forget(TGID(), ctx->ret);
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int sock_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return mark_exit((struct task_struct *)ctx->args[0], &sock_procs);
}

/* An exec makes the process another program: whether it is selected is
 * undecided again (traced) until user space decides on the new program. A
 * child forked by an unselected program (a shell, a test driver) is thus
 * traced from its exec of a selected one on. */
SEC("raw_tracepoint/sched_process_exec")
int sock_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	__u32 tgid = BPF_CORE_READ(t, tgid);
	bpf_map_delete_elem(&selected, &tgid);
	return mark_exec(t);
}

/* Force enum proto and enum skip into BTF: user space names them. */
const enum proto *unused_proto __attribute__((unused));
const enum skip *unused_skip __attribute__((unused));
/* And enum call_kind: user space records blocked reads (struct call). */
const enum call_kind *unused_call_kind __attribute__((unused));
