/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* A task's TCP sockets and their addresses, read through CO-RE. */
#ifndef __PERISCOPE_SOCK_BPF_H__
#define __PERISCOPE_SOCK_BPF_H__

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* A descriptor of a process. */
struct fd_key {
	__u32 tgid;
	__s32 fd;
};

/* fd_file returns the file the current task's descriptor fd names, or 0. */
static __always_inline struct file *fd_file(long fd)
{
	struct file **fds;
	if (have_task_btf()) {
		/* Plain loads (the verifier guards them), one copy: the
		 * table's slot, which is not a typed pointer. */
		struct task_struct *task = bpf_get_current_task_btf();
		struct files_struct *files = task->files;
		struct fdtable *fdt = files ? files->fdt : 0;
		if (!fdt || fd < 0 || fd >= fdt->max_fds)
			return 0;
		fds = fdt->fd;
	} else {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
		if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
			return 0;
		fds = BPF_CORE_READ(fdt, fd);
	}
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) != 0)
		return 0;
	return f;
}

/* file_sock returns the TCP (stream inet) socket that file f is, or 0. */
static __always_inline __u64 file_sock(struct file *f)
{
	if (!f)
		return 0;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock || BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	return (__u64)sk;
}

/* fd_sock returns the TCP (stream inet) socket behind the current task's
 * file descriptor fd, or 0: files, pipes, UNIX and UDP sockets give 0. */
static __always_inline __u64 fd_sock(long fd) { return file_sock(fd_file(fd)); }

/* sk_tuple fills b with the addresses of the TCP socket sk. */
static __always_inline void sk_tuple(struct sock *sk, struct tuple *b)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == AF_INET) {
		__be32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(b->local_addr, &l, 4);
		__builtin_memcpy(b->remote_addr, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&b->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&b->remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	b->family = family;
	b->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	b->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

/* TCP states (include/net/tcp_states.h). */
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_CLOSING 11

/* sk_took_fin tells, at the exit of a read on TCP socket sk that left
 * copied (copied_seq), whether the read took the peer's FIN: the kernel
 * moves copied_seq past the FIN (one sequence number, no byte) when a read
 * reaches it, in the same call as the last bytes before it. It did if a FIN
 * came (the states after one; CLOSE also after a reset, where the answer
 * only makes the read overlap the last) and nothing is left to read: the
 * FIN is the last sequence number before rcv_nxt. A FIN that comes while
 * the read is leaving moves rcv_nxt past copied_seq: not taken. */
static __always_inline bool sk_took_fin(struct sock *sk, __u32 copied)
{
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state != TCP_CLOSE_WAIT && state != TCP_LAST_ACK && state != TCP_CLOSING && state != TCP_CLOSE)
		return false;
	return BPF_CORE_READ((struct tcp_sock *)sk, rcv_nxt) == copied;
}

/* sk_stream_start tells whether a call on TCP socket sk is the first to
 * move bytes of its direction on the connection: for a write, at its entry,
 * whether nothing was ever sent or queued (no data byte sent, nothing
 * waiting in the send queue); for a read, at its exit after it took moved
 * bytes, whether those were the first the application took (the bytes
 * received less those not read yet, less this read's, is 0; a FIN counts in
 * rcv_nxt and bytes_received, so one not read cancels, and one the read
 * took counts with its bytes). Requests counted from such a call are
 * counted from the connection's start at both ends. */
static __always_inline bool sk_stream_start(struct sock *sk, bool write, __u64 moved)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	if (write)
		return BPF_CORE_READ(tp, bytes_sent) == 0 && BPF_CORE_READ(tp, write_seq) == BPF_CORE_READ(tp, snd_nxt);
	__u32 copied = BPF_CORE_READ(tp, copied_seq);
	__u32 unread = BPF_CORE_READ(tp, rcv_nxt) - copied;
	if (sk_took_fin(sk, copied))
		moved++;
	return BPF_CORE_READ(tp, bytes_received) == (__u64)unread + moved;
}

/* sk_call_seq returns the TCP sequence number of the first byte of a call
 * on TCP socket sk: for a write at its entry, the next byte the socket will
 * queue (write_seq); at a call's exit, after it moved moved bytes, the next
 * byte of its direction (write_seq, or copied_seq: the next byte the
 * application will read, less the FIN if the read took it: sk_took_fin)
 * less those. A MSG_PEEK read, which leaves copied_seq, is given a sequence
 * before its bytes': it never starts a request a peer wrote there, since
 * its bytes are read again. */
static __always_inline __u32 sk_call_seq(struct sock *sk, bool write, bool done, __u64 moved)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	if (write) {
		__u32 next = BPF_CORE_READ(tp, write_seq);
		return done ? next - (__u32)moved : next;
	}
	__u32 next = BPF_CORE_READ(tp, copied_seq);
	if (done && sk_took_fin(sk, next))
		next--;
	return done ? next - (__u32)moved : next;
}

/* sock_tuple fills b with the addresses of the current task's file
 * descriptor fd if it is a TCP (stream inet) socket. */
static __always_inline bool sock_tuple(__s32 fd, struct tuple *b)
{
	struct sock *sk = (struct sock *)fd_sock(fd);
	if (!sk)
		return false;
	sk_tuple(sk, b);
	return true;
}

/* set_sock_owner records in owners (struct sock * -> struct sock_owner)
 * that the current process owns socket sk, having opened it as role. */
static __always_inline void set_sock_owner(void *owners, __u64 sk, __u8 role)
{
	struct sock_owner o = {};
	o.tgid = bpf_get_current_pid_tgid() >> 32;
	o.role = role;
	bpf_get_current_comm(o.comm, sizeof(o.comm));
	bpf_map_update_elem(owners, &sk, &o, BPF_ANY);
}

#endif /* __PERISCOPE_SOCK_BPF_H__ */
