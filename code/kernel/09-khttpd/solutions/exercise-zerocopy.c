/* solutions/exercise-zerocopy.c - THE REFERENCE SOLUTION of lesson 9's exercise 2: the page sent without a copy.
 *
 * What ../exercise-zerocopy.c should become. khttpd.c includes this file in place of the
 * student's where it exists (the course's own checkout; a student copy has no solutions/), so
 * the course's figures of the zero-copy server are this answer's.
 */

/* The header copied into the socket, then the page itself handed to it: the socket takes a
 * reference to the page instead of copying it, and no request reads the file again (page_of(),
 * in khttpd.c, read it once when the client connected). Only the request and the header are
 * copied. Until 6.5 that was kernel_sendpage(); 6.5 replaced ->sendpage with sendmsg() and
 * MSG_SPLICE_PAGES over an iterator of pages. The page never changes while the socket may still
 * hold it (a retransmission would send it again). */
static int send_page_zerocopy(struct socket *conn, struct page *page, size_t size, struct request_cost *cost)
{
	char header[HEADER_LIMIT];
	struct kvec vec;
	struct msghdr msg = { .msg_flags = MSG_MORE };
	int length = scnprintf(header, sizeof(header),
			       "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n\r\n", size);
	int sent;

	vec = (struct kvec){ .iov_base = header, .iov_len = length };
	sent = kernel_sendmsg(conn, &msg, &vec, 1, length);
	cost->calls++;
	if (sent != length)
		return sent < 0 ? sent : -EIO;
	cost->copied += sent;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
	{
		struct bio_vec bvec;
		struct msghdr pages = { .msg_flags = MSG_SPLICE_PAGES };

		bvec_set_page(&bvec, page, size, 0);
		iov_iter_bvec(&pages.msg_iter, ITER_SOURCE, &bvec, 1, size);
		sent = sock_sendmsg(conn, &pages);
	}
#else
	sent = kernel_sendpage(conn, page, 0, size, 0);
#endif
	cost->calls++;
	return sent == size ? 0 : sent < 0 ? sent : -EIO;
}
