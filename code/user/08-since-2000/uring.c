/* uring.c - 32 reads as 32 system calls, or as one io_uring submission.
 *
 * Lesson 8. io_uring (Linux 5.1) lets a program queue many operations in memory shared
 * with the kernel and hand them over with a single system call. Each sample times a batch
 * of 32 reads of 64 bytes at offset 0 of standard input (/dev/zero or a file in the page
 * cache), both ways; the pipeline divides by 32 to give the cost of one read.
 *
 * usage: uring [samples]
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>
#include <liburing.h>

#define BATCH 32
#define SIZE 64

static char buffers[BATCH][SIZE];

/* Queue BATCH reads, submit them with one system call and wait for all completions. */
static int uring_batch(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int i, failed = 0;

	for (i = 0; i < BATCH; i++)
		io_uring_prep_read(io_uring_get_sqe(ring), STDIN_FILENO, buffers[i], SIZE, 0);
	if (io_uring_submit_and_wait(ring, BATCH) != BATCH)
		return -1;
	for (i = 0; i < BATCH; i++) {
		if (io_uring_wait_cqe(ring, &cqe) != 0)
			return -1;
		failed |= cqe->res != SIZE;
		io_uring_cqe_seen(ring, cqe);
	}
	return failed ? -1 : 0;
}

/* BATCH reads, one system call each; 0 when every one returned SIZE. Each result is kept
 * beside its call (one XOR and one OR), as MEASURE() keeps them. */
static long read_loop(void)
{
	long odd = 0;

	for (int i = 0; i < BATCH; i++)
		odd |= pread(STDIN_FILENO, buffers[i], SIZE, 0) ^ SIZE;
	return odd;
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 5000);
	uint32_t *samples = sample_buffer(n);
	struct io_uring ring;
	int ret;
	long odd = 0;  /* every timed batch's result, OR-ed: 0 when all succeeded */

	pin_to_one_cpu();
	print_tsc_hz();
	MEASURE_PAIR("stamp-pair", n, samples);
	/* MEASURE_BATCH divides by its count; here each sample is one batch of BATCH reads. */
	for (long i = 0; i < n; i++)
		odd |= read_loop();
	for (long i = 0; i < n; i++) {
		uint64_t t0 = stamp_begin();
		odd |= read_loop();
		samples[i] = (uint32_t)(stamp_end() - t0);
	}
	print_checked("read-loop", "stamp-pair", BATCH, samples, n, SIZE, odd, 0);

	ret = io_uring_queue_init(BATCH, &ring, 0);
	if (ret < 0) {
		printf("course: skip io-uring io_uring is not available here: %s\n", strerror(-ret));
		return 0;
	}
	if (uring_batch(&ring) != 0) {
		printf("course: skip io-uring a batch of reads through io_uring failed\n");
		return 0;
	}
	odd = 0;
	for (long i = 0; i < n; i++)
		odd |= uring_batch(&ring);
	for (long i = 0; i < n; i++) {
		uint64_t t0 = stamp_begin();
		odd |= uring_batch(&ring);
		samples[i] = (uint32_t)(stamp_end() - t0);
	}
	print_checked("io-uring", "stamp-pair", BATCH, samples, n, 0, odd, 0);
	io_uring_queue_exit(&ring);
	printf("%d reads of %d bytes per sample, from standard input\n", BATCH, SIZE);
	free(samples);
	return 0;
}
