// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Go net/http, server and client, from the binary alone (Go >= 1.17 register
 * ABI). Every probe is a plain uprobe placed on the conditional branch of the
 * function's stack-bound check (symbols.GoBinary.EntryProbe): the kernel
 * emulates that branch (~0.7 us per hit here, against ~19 us for a probe on
 * an instruction it must single-step), and the arguments are still in their
 * registers there. No uretprobes: goroutine stacks move, and a rewritten
 * return address crashes the program.
 *
 * Server, two hits per request, no return probe:
 *   net/http.serverHandler.ServeHTTP(sh, rw ResponseWriter, req *Request)
 *     start: the span's ID, the connection's 4-tuple.
 *   net/http.(*response).finishRequest(w)
 *     end: method, path, host, status, sizes from w and w.req.
 * Client: net/http.(*persistConn).roundTrip(pc, treq) at entry (start, with
 * the connection's 4-tuple from pc.conn) and at each of its RET instructions
 * (end: the *Response or the error in the result registers).
 *
 * In-flight calls are keyed by process and goroutine (runtime.g, in R14 on
 * amd64 and X28 on arm64).
 */
#include "common.bpf.h"
#include "sock.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#if defined(__TARGET_ARCH_x86)
#define GO_ARG1(r) ((r)->ax)
#define GO_ARG2(r) ((r)->bx)
#define GO_ARG3(r) ((r)->cx)
#define GO_ARG4(r) ((r)->di)
#define GO_G(r) ((r)->r14)
#elif defined(__TARGET_ARCH_arm64)
#define GO_ARG1(r) ((r)->regs[0])
#define GO_ARG2(r) ((r)->regs[1])
#define GO_ARG3(r) ((r)->regs[2])
#define GO_ARG4(r) ((r)->regs[3])
#define GO_G(r) ((r)->regs[28])
#endif

#define MAX_BINARIES 256

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BINARIES);
	__type(key, __u32);
	__type(value, struct go_offsets);
} offsets SEC(".maps");

struct g_key {
	__u64 g;
	__u32 tgid;
	__u32 _pad;
};

struct server_req {
	__u64 id;
	__u64 resp; /* *response */
};

struct client_req {
	__u64 id;
	__u64 req; /* *Request */
	__u64 pc;  /* *persistConn */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct g_key);
	__type(value, struct server_req);
} servers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct g_key);
	__type(value, struct client_req);
} clients SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct request_end_event);
} end_scratch SEC(".maps");

/* Processes that made Go HTTP calls report their exit in this ring, in
 * order with their requests. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} go_procs SEC(".maps");

const struct request_start_event *unused_request_start_event __attribute__((unused));
const struct request_end_event *unused_request_end_event __attribute__((unused));
const struct go_offsets *unused_go_offsets __attribute__((unused));

static __always_inline struct go_offsets *offsets_of(struct pt_regs *ctx)
{
	__u32 idx = (__u32)bpf_get_attach_cookie(ctx);
	return bpf_map_lookup_elem(&offsets, &idx);
}

static __always_inline __u64 read_ptr(__u64 base, __s64 off)
{
	__u64 v = 0;
	if (base && off >= 0)
		bpf_probe_read_user(&v, sizeof(v), (void *)(base + off));
	return v;
}

static __always_inline __u64 new_id(void)
{
	__u64 id = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
	return id ? id : 1;
}

/* go_string copies a Go string {ptr, len} at base+off into dst (cap bytes)
 * and returns its full length. */
static __always_inline __u16 go_string(char *dst, __u32 cap, __u64 base, __s64 off)
{
	struct {
		__u64 ptr;
		__s64 len;
	} s = {};
	if (!base || off < 0 || bpf_probe_read_user(&s, sizeof(s), (void *)(base + off)) != 0)
		return 0;
	if (s.len <= 0 || !s.ptr)
		return 0;
	__u32 n = s.len > cap ? cap : (__u32)s.len;
	bpf_probe_read_user(dst, n, (void *)s.ptr);
	return s.len > 0xffff ? 0xffff : (__u16)s.len;
}

/* conn_fd follows a net.Conn interface value at base+off to the socket's
 * file descriptor: through a *tls.Conn when tls is set, then
 * *net.TCPConn -> net.conn.fd -> netFD.pfd.Sysfd. */
static __always_inline __s32 conn_fd(struct go_offsets *o, __u64 base, __s64 off, bool tls)
{
	__u64 c = read_ptr(base, off + 8); /* the interface's data word */
	if (tls)
		c = read_ptr(c, o->tls_conn_conn + 8);
	__u64 netfd = read_ptr(c, o->tcp_conn_conn + o->net_conn_fd);
	if (!netfd)
		return -1;
	__s64 fd = -1;
	if (o->netfd_pfd < 0 || o->pollfd_sysfd < 0 ||
	    bpf_probe_read_user(&fd, sizeof(fd), (void *)(netfd + o->netfd_pfd + o->pollfd_sysfd)) != 0)
		return -1;
	return (__s32)fd;
}

static __always_inline void mark_process(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!bpf_map_lookup_elem(&go_procs, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&go_procs, &tgid, &one, BPF_ANY);
	}
}

static __always_inline void emit_start(__u32 kind, __u64 id, __u64 parent, __u64 g, __s32 fd, bool tls)
{
	mark_process();
	struct request_start_event e = {};
	fill_header(&e.hdr, EVENT_REQUEST_START);
	e.id = id;
	e.parent = parent;
	e.goroutine = g;
	e.kind = kind;
	e.fd = fd;
	e.tls = tls;
	if (fd >= 0)
		sock_tuple(fd, &e.tuple);
	output(&e, sizeof(e));
}

static __always_inline struct request_end_event *end_event(__u32 kind, __u64 id)
{
	__u32 zero = 0;
	struct request_end_event *e = bpf_map_lookup_elem(&end_scratch, &zero);
	if (!e)
		return 0;
	fill_header(&e->hdr, EVENT_REQUEST_END);
	e->id = id;
	e->kind = kind;
	e->status = 0;
	e->request_size = -1;
	e->response_size = -1;
	e->error = 0;
	e->method_len = e->path_len = e->host_len = e->query_len = 0;
	e->_pad = 0;
	return e;
}

/* request_fields fills the method, path, host and query of a *Request. */
static __always_inline void request_fields(struct request_end_event *e, struct go_offsets *o, __u64 req)
{
	e->method_len = go_string(e->method, REQ_METHOD_CAP, req, o->request_method);
	e->host_len = go_string(e->host, REQ_HOST_CAP, req, o->request_host);
	__u64 url = read_ptr(req, o->request_url);
	e->path_len = go_string(e->path, REQ_PATH_CAP, url, o->url_path);
	e->query_len = go_string(e->query, REQ_QUERY_CAP, url, o->url_raw_query);
	if (!e->host_len)
		e->host_len = go_string(e->host, REQ_HOST_CAP, url, o->url_host);
	__s64 cl = -1;
	if (o->request_content_length >= 0)
		bpf_probe_read_user(&cl, sizeof(cl), (void *)(req + o->request_content_length));
	e->request_size = cl;
}

SEC("uprobe/go_serve_http")
int go_serve_http(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	struct g_key k = {.g = GO_G(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	struct server_req s = {.id = new_id(), .resp = GO_ARG3(ctx)};
	bpf_map_update_elem(&servers, &k, &s, BPF_ANY);

	__u64 conn = read_ptr(s.resp, o->response_conn);
	bool tls = read_ptr(conn, o->conn_tls_state) != 0;
	emit_start(REQUEST_SERVER, s.id, 0, k.g, conn ? conn_fd(o, conn, o->conn_rwc, tls) : -1, tls);
	return 0;
}

SEC("uprobe/go_finish_request")
int go_finish_request(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	struct g_key k = {.g = GO_G(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	struct server_req *s = bpf_map_lookup_elem(&servers, &k);
	__u64 w = GO_ARG1(ctx);
	if (!s || s->resp != w) {
		count(COUNTER_CALLS_LOST);
		return 0;
	}
	struct request_end_event *e = end_event(REQUEST_SERVER, s->id);
	bpf_map_delete_elem(&servers, &k);
	if (!e)
		return 0;
	request_fields(e, o, read_ptr(w, o->response_req));
	__s64 status = 0, written = -1;
	if (o->response_status >= 0)
		bpf_probe_read_user(&status, sizeof(status), (void *)(w + o->response_status));
	if (o->response_written >= 0)
		bpf_probe_read_user(&written, sizeof(written), (void *)(w + o->response_written));
	/* finishRequest writes the 200 header itself when the handler wrote none. */
	e->status = status > 0 ? (__u32)status : 200;
	e->response_size = written;
	output(e, sizeof(*e));
	return 0;
}

SEC("uprobe/go_round_trip")
int go_round_trip(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct g_key k = {.g = GO_G(ctx), .tgid = tgid};
	struct client_req c = {.id = new_id(), .pc = GO_ARG1(ctx)};
	c.req = read_ptr(GO_ARG2(ctx), o->transport_request_request);
	bpf_map_update_elem(&clients, &k, &c, BPF_ANY);

	__u64 parent = 0;
	struct server_req *s = bpf_map_lookup_elem(&servers, &k);
	if (s)
		parent = s->id;
	bool tls = read_ptr(c.pc, o->persist_conn_tls_state) != 0;
	emit_start(REQUEST_CLIENT, c.id, parent, k.g, conn_fd(o, c.pc, o->persist_conn_conn, tls), tls);
	return 0;
}

SEC("uprobe/go_round_trip_return")
int go_round_trip_return(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	struct g_key k = {.g = GO_G(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	struct client_req *c = bpf_map_lookup_elem(&clients, &k);
	if (!c) {
		count(COUNTER_CALLS_LOST);
		return 0;
	}
	struct request_end_event *e = end_event(REQUEST_CLIENT, c->id);
	__u64 req = c->req;
	bpf_map_delete_elem(&clients, &k);
	if (!e)
		return 0;
	request_fields(e, o, req);
	__u64 resp = GO_ARG1(ctx);
	if (GO_ARG2(ctx) != 0 || !resp) {
		e->error = 1;
	} else {
		__s64 status = 0, cl = -1;
		if (o->client_response_status_code >= 0)
			bpf_probe_read_user(&status, sizeof(status), (void *)(resp + o->client_response_status_code));
		if (o->client_response_content_length >= 0)
			bpf_probe_read_user(&cl, sizeof(cl), (void *)(resp + o->client_response_content_length));
		e->status = (__u32)status;
		e->response_size = cl;
	}
	output(e, sizeof(*e));
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int go_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	__u32 pid = BPF_CORE_READ(t, pid);
	if (pid != BPF_CORE_READ(t, tgid) || !bpf_map_lookup_elem(&go_procs, &pid))
		return 0;
	bpf_map_delete_elem(&go_procs, &pid);
	struct proc_event e = {};
	fill_header(&e.hdr, EVENT_EXIT);
	e.hdr.pid = pid;
	e.fd = -1;
	output(&e, sizeof(e));
	return 0;
}
