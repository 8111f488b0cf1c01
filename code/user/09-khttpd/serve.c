/* serve.c - one small page served from user space four ways, and the client that checks every answer.
 *
 * Lesson 9. kHTTPd answered a request inside the kernel to save the system calls and copies of
 * a user-space server. Today's user space has its own answers to the same cost; this program
 * serves one page over 127.0.0.1 with each, so that they can be set side by side with the
 * in-kernel server (khttpd.c) in one guest, one kernel and one unit:
 *
 *   read-write  recv() the request, pread() the page into a buffer, write() header and page
 *   sendfile    recv(), write() the header, sendfile() the page: no copy through user space
 *   splice      recv(), write() the header, splice() the page into a pipe and the pipe into the socket
 *   io_uring    accept, receive, read and send as io_uring operations: one io_uring_enter() per request
 *
 * Each server serves `requests` requests on one keep-alive connection from the client, which
 * runs in a child process: it writes the page (deterministic bytes), connects, sends the
 * requests one after the other, times each from its send to the last byte of the answer, and
 * checks every byte of every answer. Both count the system calls they make for each request;
 * the server also counts the bytes it copies between user space and the kernel.
 *
 * usage: serve MODE [requests] [batch]       MODE: read-write, sendfile, splice, io_uring
 *        serve client PORT [requests [zerocopy]] [batch]
 *                                     the client alone, against khttpd.ko on 127.0.0.1:PORT
 *
 * "batch" makes a count repeatable from boot to boot (the guest's runs use it): client and server
 * run as SCHED_BATCH, which a wake-up never preempts, so the one CPU passes from one to the
 * other only where one blocks, and with their addresses unrandomized, so every copy starts at
 * the same address.
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define PAGE_SIZE_BYTES 2048
#define REQUEST_LIMIT 1024
#define HEADER_LIMIT 128
#define PAGE_PATH "/tmp/course-khttpd.html"  /* where khttpd.ko reads it (its path= parameter) */
#define REEXEC_MARK "COURSE_SERVE_REEXEC"  /* set across run_repeatably()'s one exec of itself */

static const char request_text[] = "GET /page.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/* The page: 2048 bytes of HTML, the same on every run, so the client knows every byte to expect. */
static void page_bytes(char *page)
{
	int used = snprintf(page, PAGE_SIZE_BYTES, "<!doctype html>\n<title>kHTTPd</title>\n<pre>\n");

	for (int line = 0; used < PAGE_SIZE_BYTES; line++)
		used += snprintf(page + used, PAGE_SIZE_BYTES + 1 - used, "line %04d of the page served in lesson 9\n",
				 line);
	memcpy(page + PAGE_SIZE_BYTES - 7, "</pre>\n", 7);
}

static int header_of(char *header, long size)
{
	return snprintf(header, HEADER_LIMIT, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %ld\r\n\r\n",
			size);
}

static void fail(const char *what)
{
	fprintf(stderr, "serve: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* What one request cost a server: its system calls, and the bytes they copied across. */
struct cost {
	uint32_t *calls;
	uint32_t *copied;
};

static void print_counts(const char *id, const char *unit, uint32_t *values, long n)
{
	printf("course: measure %s unit=%s samples=%ld\n", id, unit, n);
	print_hist(id, values, n);
}

/* ---- the client ---------------------------------------------------------------------------- */

/* Send `requests` requests on one connection; time each and check its answer byte for byte. */
static int run_client(int port, long requests, const char *label)
{
	char page[PAGE_SIZE_BYTES + 1], expected[HEADER_LIMIT + PAGE_SIZE_BYTES], answer[HEADER_LIMIT + PAGE_SIZE_BYTES];
	struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(port) };
	uint32_t *ticks = sample_buffer(requests), *calls = sample_buffer(requests);
	char id[64];
	struct timeval patience = { .tv_sec = 60 };
	long expected_length, wrong = 0;
	int one = 1, sock;

	page_bytes(page);
	expected_length = header_of(expected, PAGE_SIZE_BYTES);
	memcpy(expected + expected_length, page, PAGE_SIZE_BYTES);
	expected_length += PAGE_SIZE_BYTES;
	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sock = socket(AF_INET, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof(address)) != 0)
		fail("client: connect to 127.0.0.1");
	setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));  /* a silent server fails the run */
	for (long i = 0; i < requests; i++) {
		long got = 0;
		uint32_t made = 1;
		uint64_t t0 = stamp_begin();

		if (write(sock, request_text, sizeof(request_text) - 1) != sizeof(request_text) - 1)
			fail("client: send a request");
		while (got < expected_length) {
			ssize_t n = read(sock, answer + got, expected_length - got);

			made++;
			if (n <= 0) {
				fprintf(stderr, "serve: client: no answer to request %ld (%s)\n", i + 1,
					n == 0 ? "the server closed the connection" : strerror(errno));
				exit(1);
			}
			got += n;
		}
		ticks[i] = (uint32_t)(stamp_end() - t0);
		calls[i] = made;
		wrong += memcmp(answer, expected, expected_length) != 0;
	}
	close(sock);
	if (wrong) {
		fprintf(stderr, "serve: client: %ld of %ld answers differ from the page\n", wrong, requests);
		return 1;
	}
	printf("course: meta answers_checked=%ld answer_bytes=%ld\n", requests, expected_length);
	snprintf(id, sizeof(id), "request.%s", label);
	print_samples(id, NULL, 1, ticks, requests);
	snprintf(id, sizeof(id), "client-syscalls.%s", label);
	print_counts(id, "calls", calls, requests);
	return 0;
}

/* ---- the servers --------------------------------------------------------------------------- */

/* Read one request, up to its blank line; its length, or 0 when the client has left. */
static long receive_request(int conn, char *request, uint32_t *calls, uint32_t *copied)
{
	long used = 0;

	for (;;) {
		ssize_t n = recv(conn, request + used, REQUEST_LIMIT - 1 - used, 0);

		++*calls;
		if (n <= 0)
			return 0;
		used += n;
		*copied += n;
		request[used] = '\0';
		if (strstr(request, "\r\n\r\n"))
			return used;
		if (used == REQUEST_LIMIT - 1)
			return 0;
	}
}

static void serve_read_write(int conn, int page, long requests, struct cost cost)
{
	char request[REQUEST_LIMIT], buffer[HEADER_LIMIT + PAGE_SIZE_BYTES];

	for (long i = 0; i < requests && receive_request(conn, request, &cost.calls[i], &cost.copied[i]); i++) {
		int length = header_of(buffer, PAGE_SIZE_BYTES);
		ssize_t size = pread(page, buffer + length, PAGE_SIZE_BYTES, 0);  /* page cache -> buffer */
		ssize_t sent = write(conn, buffer, length + size);                /* buffer -> socket */

		if (size != PAGE_SIZE_BYTES || sent != length + size)
			fail("read-write: pread or write came short");

		cost.calls[i] += 2;
		cost.copied[i] += size + sent;
	}
}

static void serve_sendfile(int conn, int page, long requests, struct cost cost)
{
	char request[REQUEST_LIMIT], header[HEADER_LIMIT];

	for (long i = 0; i < requests && receive_request(conn, request, &cost.calls[i], &cost.copied[i]); i++) {
		int length = header_of(header, PAGE_SIZE_BYTES);
		off_t offset = 0;
		ssize_t sent = send(conn, header, length, MSG_MORE);  /* the header: the only bytes from user space */

		if (sendfile(conn, page, &offset, PAGE_SIZE_BYTES) != PAGE_SIZE_BYTES || sent != length)
			fail("sendfile came short");  /* page cache -> socket, in the kernel */
		cost.calls[i] += 2;
		cost.copied[i] += sent;
	}
}

static void serve_splice(int conn, int page, long requests, struct cost cost)
{
	char request[REQUEST_LIMIT], header[HEADER_LIMIT];
	int pipe_ends[2];

	if (pipe(pipe_ends) != 0)
		fail("pipe");
	for (long i = 0; i < requests && receive_request(conn, request, &cost.calls[i], &cost.copied[i]); i++) {
		int length = header_of(header, PAGE_SIZE_BYTES);
		loff_t offset = 0;
		ssize_t sent = send(conn, header, length, MSG_MORE);
		ssize_t moved = splice(page, &offset, pipe_ends[1], NULL, PAGE_SIZE_BYTES, 0);  /* page cache -> pipe */

		if (moved != PAGE_SIZE_BYTES || splice(pipe_ends[0], NULL, conn, NULL, moved, 0) != moved || sent != length)
			fail("splice came short");  /* pipe -> socket */
		cost.calls[i] += 3;
		cost.copied[i] += sent;
	}
	close(pipe_ends[0]);
	close(pipe_ends[1]);
}

/* The io_uring server: accept, receive, read and send are operations queued in memory shared
 * with the kernel. Each round submits the answer to the last request (the page read into the
 * buffer, then sent: two linked operations) with the receive of the next request, and waits
 * for all three completions: one io_uring_enter() per request. */
enum { RECEIVED = 1, READ_DONE, SENT };

/* Tag an operation once it is prepared (preparing one clears its tag and flags). */
static void tag(struct io_uring_sqe *sqe, uint64_t what, unsigned flags)
{
	io_uring_sqe_set_data64(sqe, what);
	io_uring_sqe_set_flags(sqe, flags);
}

static void serve_io_uring(int listener, int page, long requests, struct cost cost)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	char request[REQUEST_LIMIT], buffer[HEADER_LIMIT + PAGE_SIZE_BYTES];
	struct io_uring_sqe *sqe;
	int conn, length = header_of(buffer, PAGE_SIZE_BYTES), queued;
	long i = 0;

	if (io_uring_queue_init(8, &ring, 0) != 0)
		fail("io_uring_queue_init");
	io_uring_prep_accept(io_uring_get_sqe(&ring), listener, NULL, NULL, 0);
	io_uring_submit_and_wait(&ring, 1);
	io_uring_wait_cqe(&ring, &cqe);
	conn = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	if (conn < 0) {
		errno = -conn;
		fail("io_uring accept");
	}
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_recv(sqe, conn, request, REQUEST_LIMIT - 1, 0);
	tag(sqe, RECEIVED, 0);
	queued = 1;
	for (;;) {
		long received = 0, failed = 0;

		if (io_uring_submit_and_wait(&ring, queued) < 0)  /* the one system call of the round */
			fail("io_uring_submit_and_wait");
		cost.calls[i < requests ? i : requests - 1]++;
		for (int done = 0; done < queued; done++) {
			io_uring_wait_cqe(&ring, &cqe);  /* already there: no system call */
			if (cqe->user_data == RECEIVED)
				received = cqe->res;
			else if (cqe->res < 0)
				failed = 1;
			if (cqe->res > 0)  /* a receive is request i's; a read or a send answers request i - 1 */
				cost.copied[cqe->user_data == RECEIVED ? i : i - 1] += cqe->res;
			io_uring_cqe_seen(&ring, cqe);
		}
		if (i == requests || failed || received <= 0)
			break;  /* the last answer is sent, or the client left */
		/* The answer: the page read into the buffer behind its header, then sent. */
		sqe = io_uring_get_sqe(&ring);
		io_uring_prep_read(sqe, page, buffer + length, PAGE_SIZE_BYTES, 0);
		tag(sqe, READ_DONE, IOSQE_IO_LINK);  /* the send starts when the read has completed */
		sqe = io_uring_get_sqe(&ring);
		io_uring_prep_send(sqe, conn, buffer, length + PAGE_SIZE_BYTES, 0);
		tag(sqe, SENT, 0);
		queued = 2;
		if (++i < requests) {
			sqe = io_uring_get_sqe(&ring);
			io_uring_prep_recv(sqe, conn, request, REQUEST_LIMIT - 1, 0);
			tag(sqe, RECEIVED, 0);
			queued = 3;
		}
	}
	io_uring_queue_exit(&ring);
	close(conn);
}

/* Write the page where the server reads it from: `path`, or a new file named after `path` (mkstemp).
 * A fixed path sits in /tmp, where anyone may have put something first, and the client may run
 * as root (the host-kernel runner): whatever is there is removed, never followed or written
 * through (a symbolic link to another file), and the page is a new file (O_EXCL): if another
 * appears in between, the run fails instead. In sticky /tmp nobody else can then replace it. */
static int write_page(char *path, int unique)
{
	char page[PAGE_SIZE_BYTES + 1];
	int fd;

	if (!unique && unlink(path) != 0 && errno != ENOENT)
		fail(path);
	fd = unique ? mkstemp(path) : open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	page_bytes(page);
	if (fd < 0 || write(fd, page, PAGE_SIZE_BYTES) != PAGE_SIZE_BYTES)
		fail(path);
	return fd;
}

static long request_count(const char *text)
{
	long n = text ? strtol(text, NULL, 10) : 200;

	if (n < 1 || n > 100000) {
		fprintf(stderr, "serve: the number of requests must be from 1 to 100000, got %s\n", text);
		exit(2);
	}
	return n;
}

static int serve(const char *mode, long requests)
{
	struct sockaddr_in address = { .sin_family = AF_INET };
	socklen_t size = sizeof(address);
	struct cost cost = { sample_buffer(requests), sample_buffer(requests) };
	char id[64], path[] = "/tmp/course-serve-XXXXXX";
	pid_t client;
	int listener, conn = -1, page, status, one = 1;

	print_tsc_hz();  /* the client's ticks in nanoseconds, where the counter is a clock */
	memset(cost.calls, 0, requests * sizeof(uint32_t));
	memset(cost.copied, 0, requests * sizeof(uint32_t));
	page = write_page(path, 1);
	unlink(path);  /* open, it stays readable; nothing is left in /tmp */
	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  /* never reachable from outside the machine */
	listener = socket(AF_INET, SOCK_STREAM, 0);
	if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof(address)) != 0 || listen(listener, 1) != 0 ||
	    getsockname(listener, (struct sockaddr *)&address, &size) != 0)
		fail("listen on 127.0.0.1");
	fflush(stdout);
	client = fork();
	if (client == 0)
		exit(run_client(ntohs(address.sin_port), requests, mode));
	if (strcmp(mode, "io_uring") == 0) {
		serve_io_uring(listener, page, requests, cost);
	} else {
		conn = accept(listener, NULL, NULL);
		if (conn < 0)
			fail("accept");
		setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (strcmp(mode, "read-write") == 0)
			serve_read_write(conn, page, requests, cost);
		else if (strcmp(mode, "sendfile") == 0)
			serve_sendfile(conn, page, requests, cost);
		else
			serve_splice(conn, page, requests, cost);
		close(conn);
	}
	close(listener);
	if (waitpid(client, &status, 0) != client || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "serve: the client failed: its answers were not all right\n");
		return 1;
	}
	snprintf(id, sizeof(id), "server-syscalls.%s", mode);
	print_counts(id, "calls", cost.calls, requests);
	snprintf(id, sizeof(id), "server-copied.%s", mode);
	print_counts(id, "bytes", cost.copied, requests);
	return 0;
}

/* The "batch" word: run again without address randomization (it is chosen at exec), then take
 * SCHED_BATCH, which a forked client inherits. Whether a woken process preempts the running one
 * depends on how long each has run, and so on the state the boot left the scheduler in; a
 * SCHED_BATCH process never preempts on waking (kernel/sched/fair.c, check_preempt_wakeup*).
 * It stays in the default class, beside the kernel's own threads, and needs no privilege. */
static void run_repeatably(char **argv)
{
	struct sched_param priority = { .sched_priority = 0 };
	int persona = personality(0xffffffff);
	int again = getenv(REEXEC_MARK) != NULL;

	if (persona == -1)
		fail("batch: personality");
	unsetenv(REEXEC_MARK);  /* the client and anything it runs start afresh */
	if (!(persona & ADDR_NO_RANDOMIZE)) {
		/* Once only: an exec that clears the flag (a set-user-ID or file-capability copy of this
		 * program, PER_CLEAR_ON_SETID) would clear it again on every exec. */
		if (again) {
			fprintf(stderr, "serve: batch: address randomization is back on after running again (a set-user-ID "
					"or file-capability binary clears ADDR_NO_RANDOMIZE at exec); run a plain copy, or "
					"leave out \"batch\"\n");
			exit(1);
		}
		if (personality(persona | ADDR_NO_RANDOMIZE) == -1)
			fail("batch: personality(ADDR_NO_RANDOMIZE)");
		if (setenv(REEXEC_MARK, "1", 1) != 0)
			fail("batch: setenv");
		execv("/proc/self/exe", argv);
		fail("batch: run again without address randomization");
	}
	if (sched_setscheduler(0, SCHED_BATCH, &priority) != 0)
		fail("batch: SCHED_BATCH");
	printf("course: meta scheduling=batch addresses=unrandomized\n");
}

int main(int argc, char **argv)
{
	if (argc > 2 && strcmp(argv[argc - 1], "batch") == 0) {
		run_repeatably(argv);
		argc--;
	}
	const char *modes[] = { "read-write", "sendfile", "splice", "io_uring" };

	if (argc >= 3 && strcmp(argv[1], "client") == 0) {
		long port = strtol(argv[2], NULL, 10);
		long requests = request_count(argc > 3 ? argv[3] : NULL);

		if (port < 1024 || port > 65535) {
			fprintf(stderr, "serve: the port must be from 1024 to 65535, got %s\n", argv[2]);
			return 2;
		}
		const char *where = getenv("COURSE_KHTTPD_PAGE");  /* another path, for a test on the host */
		const char *wanted = where && *where ? where : PAGE_PATH;
		char path[256];

		/* Cut short, the path would name another file: the page would be written there, not where asked. */
		if (snprintf(path, sizeof(path), "%s", wanted) >= (int)sizeof(path)) {
			fprintf(stderr, "serve: COURSE_KHTTPD_PAGE is %zu bytes long, over the %zu the client takes; "
					"give a shorter path\n", strlen(wanted), sizeof(path) - 1);
			return 2;
		}
		close(write_page(path, 0));  /* khttpd.ko opens it at its first connection */
		print_tsc_hz();
		return run_client((int)port, requests, argc > 4 && strcmp(argv[4], "zerocopy") == 0 ? "khttpd-zerocopy" : "khttpd");
	}
	for (unsigned m = 0; argc >= 2 && m < sizeof(modes) / sizeof(modes[0]); m++)
		if (strcmp(argv[1], modes[m]) == 0)
			return serve(modes[m], request_count(argc > 2 ? argv[2] : NULL));
	fprintf(stderr, "usage: serve read-write|sendfile|splice|io_uring [requests] [batch]\n"
			"       serve client PORT [requests [zerocopy]] [batch]   (against khttpd.ko)\n");
	return 2;
}
