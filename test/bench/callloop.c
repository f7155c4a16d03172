/*
 * callloop VARIANT N — call a small function N times and print "N elapsed_ns".
 *
 * The target of the uprobe micro-benchmark in test/bench: benchtool attaches a
 * no-op uprobe and/or uretprobe to periscope_bench_<VARIANT> and runs this.
 * What a uprobe costs depends on the instruction it replaces: the kernel
 * emulates some (push, call, jmp, ... on x86-64), and executes the others out
 * of line with a single step, which costs a second trap. So the functions
 * differ only in their first instruction:
 *
 *   xol   sub $0x18,%rsp   single-stepped (the first instruction of OpenSSL 3's SSL_read)
 *   push  push %rbp        emulated (x86-64 kernels >= 6.10)
 *   nop5  5-byte nop       the instruction newer kernels can turn into a call (USDT-style)
 *
 * A short warm-up comes first, outside the timed loop: the first probe hit of a
 * process maps the kernel's out-of-line execution page.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
int periscope_bench_xol(int x);
int periscope_bench_push(int x);
int periscope_bench_nop5(int x);
__asm__(
	".text\n"
	".globl periscope_bench_xol\n"
	".type periscope_bench_xol, @function\n"
	"periscope_bench_xol:\n"
	"	sub $0x18, %rsp\n"
	"	add $0x18, %rsp\n"
	"	lea 1(%rdi), %eax\n"
	"	ret\n"
	".size periscope_bench_xol, .-periscope_bench_xol\n"
	".globl periscope_bench_push\n"
	".type periscope_bench_push, @function\n"
	"periscope_bench_push:\n"
	"	push %rbp\n"
	"	pop %rbp\n"
	"	lea 1(%rdi), %eax\n"
	"	ret\n"
	".size periscope_bench_push, .-periscope_bench_push\n"
	".globl periscope_bench_nop5\n"
	".type periscope_bench_nop5, @function\n"
	"periscope_bench_nop5:\n"
	"	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n" /* nopl 0x0(%rax,%rax,1) */
	"	lea 1(%rdi), %eax\n"
	"	ret\n"
	".size periscope_bench_nop5, .-periscope_bench_nop5\n");
#else
/* Elsewhere the variants are the compiler's; the labels in the report then
 * do not describe them. */
#define VARIANT(name)                                                     \
	__attribute__((noinline, noclone, used)) int periscope_bench_##name(int x) \
	{                                                                 \
		__asm__ volatile("" ::: "memory");                        \
		return x + 1;                                             \
	}
VARIANT(xol)
VARIANT(push)
VARIANT(nop5)
#endif

int main(int argc, char **argv)
{
	int (*fn)(int) = NULL;
	long n = argc > 2 ? atol(argv[2]) : 0;
	volatile int sink = 0;
	struct timespec a, b;

	if (argc > 1 && strcmp(argv[1], "xol") == 0)
		fn = periscope_bench_xol;
	else if (argc > 1 && strcmp(argv[1], "push") == 0)
		fn = periscope_bench_push;
	else if (argc > 1 && strcmp(argv[1], "nop5") == 0)
		fn = periscope_bench_nop5;
	if (!fn || n <= 0) {
		fprintf(stderr, "usage: callloop xol|push|nop5 N (N > 0)\n");
		return 2;
	}

	for (int i = 0; i < 1000; i++)
		sink = fn(sink);

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		sink = fn(sink);
	clock_gettime(CLOCK_MONOTONIC, &b);

	long long ns = (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
	printf("%ld %lld\n", n, ns);
	return 0;
}
