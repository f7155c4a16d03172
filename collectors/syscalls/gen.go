package syscalls

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 syscalls ../../bpf/syscalls.bpf.c -- -I../../bpf
