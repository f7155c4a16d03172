package tcp

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type retransmit_event -type sock_owner tcp ../../bpf/tcp.bpf.c -- -I../../bpf
