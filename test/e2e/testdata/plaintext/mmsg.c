/* A client that speaks HTTP/1.1 through sendmmsg and recvmmsg (one message
 * per call): N GETs of /ok on one keep-alive connection.
 * Usage: mmsg-client PORT N */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int xfer(int fd, char *buf, size_t len, int send)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct mmsghdr m = {0};
	m.msg_hdr.msg_iov = &iov;
	m.msg_hdr.msg_iovlen = 1;
	int n = send ? sendmmsg(fd, &m, 1, 0) : recvmmsg(fd, &m, 1, 0, NULL);
	return n == 1 ? (int)m.msg_len : -1;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("connect");
		return 1;
	}
	char req[] = "GET /ok HTTP/1.1\r\nHost: m\r\n\r\n";
	for (int i = 0; i < atoi(argv[2]); i++) {
		if (xfer(fd, req, strlen(req), 1) != (int)strlen(req)) {
			perror("sendmmsg");
			return 1;
		}
		/* The response is small: headers and "ok\n" end it. */
		char buf[4096];
		int got = 0;
		while (got < 4 || !strstr(buf, "\r\n\r\nok\n")) {
			int n = xfer(fd, buf + got, sizeof(buf) - 1 - got, 0);
			if (n <= 0) {
				perror("recvmmsg");
				return 1;
			}
			got += n;
			buf[got] = 0;
		}
	}
	close(fd);
	puts("done");
	return 0;
}
