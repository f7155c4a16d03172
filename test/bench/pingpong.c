/*
 * pingpong — a plain-HTTP request/response loop over one loopback TCP
 * connection, for the sockets collector's cost per exchange (test/bench/
 * plain-programs.sh):
 *
 *   pingpong server PORT N   accepts one connection, answers N requests
 *                            (one read, one write each) and prints
 *                            "N cpu_ns_per_exchange" (its own user+system
 *                            time: what the agent's programs add to its
 *                            syscalls lands there)
 *   pingpong client PORT N   sends N requests, reading each response
 *
 * The script runs the two from different paths so that the agent traces
 * the server only.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const char req[] = "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pingpong\r\n\r\n";
static const char resp[] = "HTTP/1.1 200 OK\r\nServer: pingpong\r\nContent-Type: text/html\r\n"
			   "Content-Length: 64\r\nConnection: keep-alive\r\n\r\n"
			   "<html><body>0123456789012345678901234567890123456</body></html>\n";

static long long cpu_ns(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000000LL +
	       (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1000LL;
}

static int xfer(int fd, const char *out, size_t n, char *buf, size_t cap, int write_first)
{
	if (write_first && write(fd, out, n) != (ssize_t)n)
		return -1;
	if (read(fd, buf, cap) <= 0)
		return -1;
	if (!write_first && write(fd, out, n) != (ssize_t)n)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: pingpong server|client PORT N\n");
		return 2;
	}
	int server = strcmp(argv[1], "server") == 0;
	long n = atol(argv[3]);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
	if (server) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 1)) {
			perror("listen");
			return 1;
		}
		int c = accept(fd, 0, 0);
		if (c < 0) {
			perror("accept");
			return 1;
		}
		fd = c;
	} else if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror("connect");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	char buf[4096];
	long long t0 = cpu_ns();
	for (long i = 0; i < n; i++) {
		int r = server ? xfer(fd, resp, sizeof(resp) - 1, buf, sizeof(buf), 0)
			       : xfer(fd, req, sizeof(req) - 1, buf, sizeof(buf), 1);
		if (r) {
			fprintf(stderr, "exchange %ld failed\n", i);
			return 1;
		}
	}
	if (server)
		printf("%ld %lld\n", n, (cpu_ns() - t0) / n);
	return 0;
}
