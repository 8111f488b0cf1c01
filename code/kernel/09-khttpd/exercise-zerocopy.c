/* exercise-zerocopy.c - YOUR VARIANT: lesson 9's exercise 2, the page sent without copying it.
 *
 * khttpd.c includes this file: the module loaded with zerocopy=1 answers every request with
 * send_page_zerocopy(). page_of() (khttpd.c) has already read the page, once, into a page of the
 * module's own. Write send_page_zerocopy() so that the header goes into the socket as bytes and
 * the page goes as the page itself, never copied; then run `invoke lesson 9`: the guest loads
 * the module, its client checks every byte of every answer, and the lesson's tables set your
 * server beside the one that copies.
 */

/* Send one answer: the header for `size` bytes of text/html (as send_page() writes it), then the
 * `size` bytes of `page`. Count every kernel call in cost->calls and every byte you copy in
 * cost->copied. 0 when all was sent, else a negative errno. */
static int send_page_zerocopy(struct socket *conn, struct page *page, size_t size, struct request_cost *cost)
{
	/* TODO: the header with kernel_sendmsg() and MSG_MORE (more follows); then the page without
	 * a copy: kernel_sendpage() before Linux 6.5, since then sock_sendmsg() with MSG_SPLICE_PAGES
	 * and an iterator over one bio_vec (bvec_set_page(), iov_iter_bvec()). Until you do, this
	 * stub says so in the guest (the course's check line, which the run's failure quotes) and
	 * the client gets no answer. */
	course_print("check zerocopy fail send_page_zerocopy() is still the stub of exercise-zerocopy.c: "
		     "write it (lesson 9, exercise 2), then rerun invoke lesson 9");
	return -EOPNOTSUPP;
}
