package gotls

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type go_offsets gotls ../../bpf/gotls.bpf.c -- -I../../bpf
