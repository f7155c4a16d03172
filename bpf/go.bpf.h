/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * What the Go collectors (gohttp, gotls) share: the register ABI (Go >=
 * 1.17: integer arguments and results in RAX, RBX, RCX, RDI, ... on amd64,
 * X0, X1, ... on arm64; GO_G, the current goroutine, is in common.bpf.h), reads of
 * the program's memory, and the walk from a net.Conn to its socket.
 */
#ifndef __PERISCOPE_GO_BPF_H__
#define __PERISCOPE_GO_BPF_H__

#if defined(__TARGET_ARCH_x86)
#define GO_ARG1(r) ((r)->ax)
#define GO_ARG2(r) ((r)->bx)
#define GO_ARG3(r) ((r)->cx)
#define GO_ARG4(r) ((r)->di)
#elif defined(__TARGET_ARCH_arm64)
#define GO_ARG1(r) ((r)->regs[0])
#define GO_ARG2(r) ((r)->regs[1])
#define GO_ARG3(r) ((r)->regs[2])
#define GO_ARG4(r) ((r)->regs[3])
#endif

/* Distinct Go executables whose offsets are loaded at once; a probe finds
 * its executable's entry through its cookie. */
#define MAX_BINARIES 256

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BINARIES);
	__type(key, __u32);
	__type(value, struct go_offsets);
} offsets SEC(".maps");

/* A goroutine of a process: the key of calls in flight. */
struct g_key {
	__u64 g;
	__u32 tgid;
	__u32 _pad;
};

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

/* conn_ptr is the data word of the net.Conn interface value at base+off:
 * the *tls.Conn or *net.TCPConn under it. */
static __always_inline __u64 conn_ptr(__u64 base, __s64 off) { return read_ptr(base, off + 8); }

/* conn_fd_of follows a net.Conn's data word c to the socket's file
 * descriptor: through a *tls.Conn when tls is set, then *net.TCPConn ->
 * net.conn.fd -> netFD.pfd.Sysfd. */
static __always_inline __s32 conn_fd_of(struct go_offsets *o, __u64 c, bool tls)
{
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

/* conn_fd is conn_fd_of the net.Conn interface value at base+off. */
static __always_inline __s32 conn_fd(struct go_offsets *o, __u64 base, __s64 off, bool tls)
{
	return conn_fd_of(o, conn_ptr(base, off), tls);
}

#endif /* __PERISCOPE_GO_BPF_H__ */
