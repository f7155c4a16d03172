# Periscope build, test and CI entry points. `sudo make test` (or `make test` as
# root) is the full test suite; .ci/run is what CI executes.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# sudo resets PATH: keep finding the Go toolchain and the sbin tools (appended, so
# what the user has first wins).
export PATH := $(PATH):/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin

GO ?= go

# Used by the bpf2go lines in bpf/.
export BPF_CLANG := clang-19
export BPF_CFLAGS := -O2 -g -Wall -Werror

E2E_TIMEOUT ?= 45m
KERNELS_TIMEOUT ?= 55m

.PHONY: deps generate build test unit-test e2e-test deploy-test test-kernels bench lint check-generated tools fuzz

deps:
	bash scripts/deps.sh

generate: deps
	$(GO) generate ./...

build:
	$(GO) build -o bin/periscope ./cmd/periscope

test: deps tools
	$(GO) vet ./...
	$(GO) vet -tags kernelguest ./test/kernels/guest/
	$(MAKE) --no-print-directory unit-test
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(CI_FUZZTIME)
	$(MAKE) --no-print-directory deploy-test
	$(MAKE) --no-print-directory e2e-test
	$(MAKE) --no-print-directory test-kernels

# Everything outside test/e2e and test/kernels, with the race detector: no
# root needed. The committed fuzz corpora (testdata/fuzz/) run here as plain
# tests.
unit-test:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v -e '/test/e2e' -e '/test/kernels')

# Every fuzz target (parsers of untrusted input) as a fuzzer for FUZZTIME
# each; `make test` runs a short pass (CI_FUZZTIME).
FUZZTIME ?= 30s
CI_FUZZTIME ?= 3s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

# Dashboards and alert rules (deploy/): every query parses with Prometheus's
# PromQL parser and uses only exported names (deploy/test, a module of its own
# so the agent does not depend on prometheus/prometheus); promtool checks the
# rules and runs their unit tests; the dashboards type-check against
# @grafana/schema.
deploy-test:
	cd deploy/test && $(GO) vet ./... && $(GO) test -count=1 ./...
	promtool check rules deploy/prometheus/alerts.yaml
	cd deploy/prometheus/tests && promtool test rules *.yaml

# End-to-end tests: real eBPF, real targets; root only, one package at a time.
e2e-test:
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "make: the end-to-end tests load eBPF programs and must run as root: run 'sudo make test'" >&2; \
		exit 1; \
	fi
	$(GO) test -count=1 -p 1 -timeout $(E2E_TIMEOUT) ./test/e2e/...

# Other kernels: every kernel of test/kernels/kernels.txt (Debian's 6.1: kprobes,
# no uprobe_multi) booted under qemu with the agent built from this tree; the
# kernels and a debootstrap root are built once into ~/.cache/periscope/kernels
# by scripts/kernels.sh (~3 min). Root only.
test-kernels:
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "make: the kernel tests run debootstrap and load eBPF programs: run 'sudo make test-kernels'" >&2; \
		exit 1; \
	fi
	$(GO) test -count=1 -v -timeout $(KERNELS_TIMEOUT) ./test/kernels/

# Speed (root): `make bench` runs MODE="go plain": the Go hello-world HTTPS
# server (~3 min) and nginx over plain HTTP (~5 min) under wrk, no agent vs the
# agent in ABBA rounds, the agent exporting every span to a counting OTLP
# receiver; writes test/bench/results.md and results-plain.md. `make bench
# MODE=x` runs one mode (the table: test/bench/benchtool/modes.go; options:
# test/bench/run.sh). Refuses uncommitted changes (ALLOW_DIRTY=1 for a trial):
# results name the commit they measure. Reports figures, never asserts them.
bench: deps
	bash test/bench/run.sh

lint:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (gofmt -w):" >&2; \
		echo "$$unformatted" >&2; \
		exit 1; \
	fi
	$(GO) vet ./...
	$(GO) vet -tags kernelguest ./test/kernels/guest/

# Fails when the generated files are stale or not committed: bpf/ and the bpf2go
# outputs (*_bpfel.go/.o, *_bpfeb.go/.o) next to the //go:generate lines.
GENERATED := bpf/ ':(glob)**/*_bpfel.go' ':(glob)**/*_bpfel.o' ':(glob)**/*_bpfeb.go' ':(glob)**/*_bpfeb.o'

check-generated: generate
	@if ! git diff --exit-code --stat -- $(GENERATED); then \
		echo "check-generated: generated files differ from the committed ones: run 'make generate' and commit" >&2; \
		exit 1; \
	fi
	@untracked="$$(git ls-files --others --exclude-standard -- $(GENERATED))"; \
	if [ -n "$$untracked" ]; then \
		echo "check-generated: generated files are not committed:" >&2; \
		echo "$$untracked" >&2; \
		exit 1; \
	fi
	@echo "check-generated: generated files are up to date"

tools:
	bash scripts/tools.sh jaeger hey helm grafana-schema

# Struct field offsets for Go binaries without DWARF: rebuilds
# symbols/offsets_table.go from the DWARF of a program built with every
# supported Go toolchain (21 releases, fetched once into the module cache;
# ~10 min on a cold build cache, ~1 min warm).
.PHONY: offsets
offsets:
	$(GO) run ./cmd/offsetgen -out symbols/offsets_table.go
