/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * What the collectors other than the sockets collector need from syscalls,
 * run by the agent's one pair of programs on raw_syscalls:sys_enter and
 * sys_exit: the sockets collector's (bpf/sockets.bpf.c) or, when it is off,
 * bpf/syscalls.bpf.c. Any program on a syscalls:sys_{enter,exit}_* tracepoint
 * would switch on the kernel's per-syscall tracing for every syscall of the
 * node, at a cost larger than the whole pair's.
 *
 *   discovery  mmap with PROT_EXEC of a file: a library loaded late
 *   tcp        the socket accept()/accept4() returns: its owner
 *   gotls      close of a *tls.Conn's socket: the connection ends
 *   openssl    a socket syscall inside SSL_*: the SSL*'s socket
 *              (bpf/sslbind.bpf.h), and its close
 *
 * Each hook works on its collector's maps and ring, which user space puts in
 * place of the maps below (collectors/syscalls), and is compiled in only
 * when its flag is set: a collector that is off costs nothing.
 */
#ifndef __PERISCOPE_SYSHOOKS_BPF_H__
#define __PERISCOPE_SYSHOOKS_BPF_H__

#include "syscall.bpf.h"
#include "sslbind.bpf.h"
#include "nethttp.bpf.h"
#include "gotlsconn.bpf.h"

#define PROT_EXEC 0x4

/* Set by user space: which collectors' hooks run. */
const volatile __u8 hook_discovery = 0;
const volatile __u8 hook_tcp = 0;
const volatile __u8 hook_gotls = 0;
const volatile __u8 hook_openssl = 0;

/* Discovery's ring and counters (bpf/process.bpf.c). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} discovery_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} discovery_counters SEC(".maps");

/* The tcp collector's socket owners (bpf/tcp.bpf.c). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct sock_owner);
} tcp_owners SEC(".maps");

/* The gotls collector's connections, their protocols, ring and counters
 * (bpf/gotls.bpf.c). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct conn_key);
	__type(value, struct conn_state);
} gotls_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct fd_key);
	__type(value, __u64);
} gotls_fd_conn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct plain_key);
	__type(value, __u8);
} gotls_plain_protos SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} gotls_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} gotls_counters SEC(".maps");

/* The OpenSSL collector's binding maps, ring and counters. */
SSL_BIND_MAPS(openssl_);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} openssl_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} openssl_counters SEC(".maps");

/* Records go to the other collectors' rings without waking their readers:
 * they collect them on their timers. */
#define OPENSSL_MAPS                                                                            \
	{&openssl_pending_bind, &openssl_ssl_fd, &openssl_fd_ssl, &openssl_ssl_fresh, &openssl_events, &openssl_counters, \
	 BPF_RB_NO_WAKEUP}
#define GOTLS_MAPS {&gotls_conns, &gotls_fd_conn, &gotls_plain_protos, &gotls_events, &gotls_counters}

/* hook_socket_io: a read/write-family syscall of thread id on descriptor
 * fd (a TCP socket, or anything when the caller cannot tell). */
static __always_inline void hook_socket_io(__u64 id, __s32 fd)
{
	if (hook_openssl) {
		struct ssl_bind_maps m = OPENSSL_MAPS;
		ssl_bind_syscall(&m, id, fd);
	}
}

/* hook_close: close(fd) by process tgid. */
static __always_inline void hook_close(__u32 tgid, __s32 fd)
{
	if (hook_openssl) {
		struct ssl_bind_maps m = OPENSSL_MAPS;
		ssl_bind_close(&m, tgid, fd);
	}
	if (hook_gotls) {
		struct gotls_close_maps m = GOTLS_MAPS;
		gotls_close(&m, tgid, fd);
	}
}

/* hook_mmap: mmap(addr, len, prot, flags, fd, off), whose registers are
 * regs (read_args). */
static __always_inline void hook_mmap(__u64 regs, bool typed)
{
	struct syscall_args a;
	if (!hook_discovery || !read_args(regs, typed, &a) || !(a.arg[2] & PROT_EXEC))
		return;
	__s32 fd = read_arg4(regs, typed);
	if (fd < 0)
		return;
	struct proc_event e = {};
	fill_header(&e.hdr, EVENT_MMAP);
	e.fd = fd;
	output_to(&discovery_events, &discovery_counters, &e, sizeof(e), BPF_RB_NO_WAKEUP);
}

/* hook_accepted: accept()/accept4() returned ret, the new descriptor. */
static __always_inline void hook_accepted(long ret)
{
	if (!hook_tcp || ret < 0)
		return;
	__u64 sk = fd_sock(ret);
	if (sk)
		set_sock_owner(&tcp_owners, sk, OWNER_ACCEPT);
}

/* ssl_io_syscall reports whether syscall nr is one of the read/write
 * family an SSL* may name its socket by. */
static __always_inline bool ssl_io_syscall(long nr)
{
	switch (nr) {
	case NR_read:
	case NR_write:
	case NR_readv:
	case NR_writev:
	case NR_recvfrom:
	case NR_sendto:
	case NR_recvmsg:
	case NR_sendmsg:
		return true;
	}
	return false;
}

#endif /* __PERISCOPE_SYSHOOKS_BPF_H__ */
