// Package tcp is the TCP collector: it counts the segments every TCP socket
// on the node retransmits and charges them to the process that owns the
// socket. The hook on tcp_retransmit_skb is the tcp:tcp_retransmit_skb
// tracepoint, or kprobes on tcp_retransmit_skb and __tcp_retransmit_skb when
// the kernel lacks the tracepoint (bpf/tcp.bpf.c); the owner of
// each socket is learned where the owner is the current task (connect, via
// sock:inet_sock_set_state entering SYN_SENT, and the return of accept), and
// from /proc for sockets that predate the agent.
package tcp
