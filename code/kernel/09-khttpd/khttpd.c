/* khttpd.c - a web server inside the kernel: one small page over loopback, a fixed number of requests.
 *
 * Lesson 9. The article ends with the reason to call read() from the kernel at all: kHTTPd,
 * a web server living in the kernel, which answers a request without a system call. This is
 * that server cut to its bones, with today's kernel-socket API: sock_create_kern(),
 * kernel_bind(), kernel_listen(), kernel_accept(), kernel_recvmsg(), kernel_sendmsg(), and the
 * page through kernel_read() into a buffer, as kHTTPd's DataSending() fed the socket from the
 * page cache.
 *
 * It never endangers the kernel it runs in: it listens on 127.0.0.1 only; init only opens the
 * socket and starts a kernel thread (it never waits for a client); the thread serves at most
 * `requests` requests on one keep-alive connection, gives up after `timeout` seconds without
 * one, then stops listening; unloading shuts the sockets down, waits for the thread and frees
 * everything. It counts, per request, the kernel functions it calls and the bytes it moves
 * through its own buffer, and prints them to the kernel log in the course's protocol.
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/in.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/sched.h>
#include <uapi/linux/sched/types.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/socket.h>
#include <linux/version.h>
#include <net/net_namespace.h>
#include <net/sock.h>

#include "kstamp.h"

static int port = 8080;
module_param(port, int, 0444);
MODULE_PARM_DESC(port, "TCP port on 127.0.0.1 (1024-65535)");

static int requests = 200;
module_param(requests, int, 0444);
MODULE_PARM_DESC(requests, "requests to serve, then stop listening (1-100000)");

static int timeout = 60;
module_param(timeout, int, 0444);
MODULE_PARM_DESC(timeout, "seconds to wait for a client or a request before giving up (1-600)");

static bool zerocopy;
module_param(zerocopy, bool, 0444);
MODULE_PARM_DESC(zerocopy, "send the page from the page cache, not through a buffer (lesson 9's exercise)");

/* With the client SCHED_BATCH too (serve.c's "batch"), neither preempts the other when it wakes
 * it: the one CPU passes from one to the other only where one blocks, in the same places in
 * every boot. */
static bool batch;
module_param(batch, bool, 0444);
MODULE_PARM_DESC(batch, "serve as SCHED_BATCH, as the client does with its \"batch\" word");

static char *path = "/tmp/course-khttpd.html";
module_param(path, charp, 0444);
MODULE_PARM_DESC(path, "the page to serve (the client writes it)");

#define PAGE_LIMIT 16384
#define REQUEST_LIMIT 1024
#define HEADER_LIMIT 128

static struct socket *listener;
static struct task_struct *server;

/* What one request cost the server: kernel functions called, bytes through its buffer. */
struct request_cost {
	u32 calls;
	u32 copied;
};

/* Read one request (up to its blank line) into `request`; its length, or <= 0 when the client left. */
static int receive_request(struct socket *conn, char *request, struct request_cost *cost)
{
	int used = 0;

	while (used < REQUEST_LIMIT - 1) {
		struct kvec vec = { .iov_base = request + used, .iov_len = REQUEST_LIMIT - 1 - used };
		struct msghdr msg = { };
		int got = kernel_recvmsg(conn, &msg, &vec, 1, vec.iov_len, 0);

		cost->calls++;
		if (got <= 0)
			return got;
		used += got;
		cost->copied += got;
		request[used] = '\0';
		if (strstr(request, "\r\n\r\n"))
			return used;
	}
	return -EMSGSIZE;
}

/* Answer one request: the page read with kernel_read() into `body`, sent behind its header. */
static int send_page(struct socket *conn, struct file *file, char *body, struct request_cost *cost)
{
	char header[HEADER_LIMIT];
	struct kvec vec[2];
	struct msghdr msg = { };
	loff_t pos = 0;
	ssize_t size = kernel_read(file, body, PAGE_LIMIT, &pos);
	int length, sent;

	cost->calls++;
	if (size < 0)
		return size;
	cost->copied += size;
	length = scnprintf(header, sizeof(header),
			   "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %zd\r\n\r\n", size);
	vec[0] = (struct kvec){ .iov_base = header, .iov_len = length };
	vec[1] = (struct kvec){ .iov_base = body, .iov_len = size };
	sent = kernel_sendmsg(conn, &msg, vec, 2, length + size);
	cost->calls++;
	if (sent != length + size)
		return sent < 0 ? sent : -EIO;
	cost->copied += sent;
	return 0;
}

/* Lesson 9's exercise 2: send_page_zerocopy(conn, page, size, cost), the answer sent from a
 * page of the module's own (page_of(), below) instead of through a buffer. A student copy of the
 * course has yours, exercise-zerocopy.c; the course's own checkout builds its reference solution,
 * from solutions/, so that its figures are the answer's. */
#if __has_include("solutions/exercise-zerocopy.c")
#include "solutions/exercise-zerocopy.c"
#else
#include "exercise-zerocopy.c"
#endif

/* The page for the zero-copy answers: read once, through kernel_read(), into a page of its own. */
static struct page *page_of(struct file *file, size_t *size)
{
	struct page *page = alloc_page(GFP_KERNEL);
	loff_t pos = 0;
	ssize_t got;

	if (!page)
		return ERR_PTR(-ENOMEM);
	got = kernel_read(file, page_address(page), PAGE_SIZE, &pos);
	if (got < 0) {
		__free_page(page);
		return ERR_PTR(got);
	}
	*size = got;
	return page;
}

static void print_counts(const char *id, const char *unit, u32 *values, int n)
{
	char line[320];
	int i = 0, used = 0, pairs = 0;

	sort(values, n, sizeof(*values), kstamp_compare, NULL);
	course_print("measure %s unit=%s samples=%d", id, unit, n);
	while (i < n) {
		int count = 1;

		while (i + count < n && values[i + count] == values[i])
			count++;
		used += scnprintf(line + used, sizeof(line) - used, " %ux%d", values[i], count);
		if (++pairs == 16) {
			course_print("hist %s%s", id, line);
			used = pairs = 0;
		}
		i += count;
	}
	if (pairs)
		course_print("hist %s%s", id, line);
}

static int serve(void *unused)
{
	struct socket *conn = NULL;
	struct file *file;
	char *request = kmalloc(REQUEST_LIMIT, GFP_KERNEL);
	char *body = kmalloc(PAGE_LIMIT, GFP_KERNEL);
	u32 *calls = kcalloc(requests, sizeof(u32), GFP_KERNEL);
	u32 *copied = kcalloc(requests, sizeof(u32), GFP_KERNEL);
	struct page *page = NULL;
	size_t page_size = 0;
	int served = 0, err = 0;

	if (!request || !body || !calls || !copied) {
		err = -ENOMEM;
		goto out;
	}
	err = kernel_accept(listener, &conn, 0);  /* waits at most `timeout` s (the listener's sk_rcvtimeo) */
	if (err) {
		course_print("meta ended=\"no client within %d s (accept returned %d)\"", timeout, err);
		goto out;
	}
	conn->sk->sk_rcvtimeo = timeout * HZ;
	file = filp_open(path, O_RDONLY, 0);
	if (IS_ERR(file)) {
		err = PTR_ERR(file);
		course_print("meta ended=\"cannot open %s (%d)\"", path, err);
		goto out;
	}
	if (zerocopy) {
		page = page_of(file, &page_size);
		if (IS_ERR(page)) {
			err = PTR_ERR(page);
			page = NULL;
			fput(file);
			goto out;
		}
	}
	while (served < requests && !kthread_should_stop()) {
		struct request_cost cost = { };
		int got = receive_request(conn, request, &cost);

		if (got <= 0) {
			err = got;
			break;
		}
		if (strncmp(request, "GET ", 4) != 0) {
			err = -EPROTO;
			break;
		}
		err = page ? send_page_zerocopy(conn, page, page_size, &cost) : send_page(conn, file, body, &cost);
		if (err)
			break;
		calls[served] = cost.calls;
		copied[served] = cost.copied;
		served++;
	}
	fput(file);
	if (served) {
		print_counts(zerocopy ? "server-kernel-calls.khttpd-zerocopy" : "server-kernel-calls.khttpd", "calls",
			     calls, served);
		print_counts(zerocopy ? "server-copied.khttpd-zerocopy" : "server-copied.khttpd", "bytes", copied, served);
	}
	course_print("skip server-syscalls.%s a kernel thread makes no system calls: its socket and file calls are kernel functions, counted in server-kernel-calls",
		     zerocopy ? "khttpd-zerocopy" : "khttpd");
	course_print("meta served=%d of=%d last_error=%d", served, requests, err);
	course_print("meta done=%d", served == requests ? 1 : 0);
out:
	/* The budget is spent (or the client left): stop listening now, not at unload. */
	kernel_sock_shutdown(listener, SHUT_RDWR);
	if (conn) {
		kernel_sock_shutdown(conn, SHUT_RDWR);
		sock_release(conn);
	}
	if (page)
		put_page(page);  /* freed when the socket has let go of it too */
	kfree(request);
	kfree(body);
	kfree(calls);
	kfree(copied);
	/* Wait for the unload, so that kthread_stop() always finds the thread. */
	while (!kthread_should_stop()) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (!kthread_should_stop())
			schedule();
		__set_current_state(TASK_RUNNING);
	}
	return err;
}

static int __init khttpd_init(void)
{
	struct sockaddr_in address = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),  /* never reachable from outside the machine */
		.sin_port = htons(port),
	};
	int err;

	if (port < 1024 || port > 65535 || requests < 1 || requests > 100000 || timeout < 1 || timeout > 600)
		return -EINVAL;
	err = sock_create_kern(&init_net, AF_INET, SOCK_STREAM, IPPROTO_TCP, &listener);
	if (err)
		return err;
	sock_set_reuseaddr(listener->sk);
	listener->sk->sk_rcvtimeo = timeout * HZ;
	err = kernel_bind(listener, (struct sockaddr *)&address, sizeof(address));
	if (!err)
		err = kernel_listen(listener, 1);
	if (err)
		goto fail;
	course_print("meta listening=127.0.0.1:%d requests=%d timeout=%d", port, requests, timeout);
	server = kthread_create(serve, NULL, "khttpd");
	if (IS_ERR(server)) {
		err = PTR_ERR(server);
		goto fail;
	}
	if (batch) {
		struct sched_attr attr = { .size = sizeof(attr), .sched_policy = SCHED_BATCH };

		err = sched_setattr_nocheck(server, &attr);
		if (err) {
			kthread_stop(server);  /* never started: its function does not run */
			goto fail;
		}
	}
	wake_up_process(server);
	return 0;
fail:
	sock_release(listener);
	return err;
}

static void __exit khttpd_exit(void)
{
	/* Wakes an accept() or a receive still waiting, then waits for the thread to end. */
	kernel_sock_shutdown(listener, SHUT_RDWR);
	kthread_stop(server);
	sock_release(listener);
}

module_init(khttpd_init);
module_exit(khttpd_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Lesson 9: a bounded in-kernel web server on 127.0.0.1");
