/* usystime.c - the cost of an empty read() from user space, stamp pair subtracted.
 *
 * Lesson 3. An "empty" read asks for zero bytes, so the figure is the cost of getting into
 * the kernel, finding the file and its read method, and coming back. The pipeline opens a
 * terminal, a disk file, /dev/null, /dev/zero, a pipe and a socket for it (COURSE_FILES in
 * the environment); run by hand, it times its standard input.
 *
 * The kinds of file are timed in interleaved rounds, not one after another: on a shared
 * machine every call gets faster or slower with the host from one moment to the next, and
 * figures taken at different moments would compare the moments as much as the files.
 *
 * usage: usystime [samples per kind of file]
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>

#define MAX_KINDS 8
#define ROUNDS 100  /* each kind gets a turn this many times */
#define BATCH 8     /* reads per stamp pair in the batched measurement */

/* Append `count` samples to `samples`, each timing `per` empty reads of `fd`. Every result
 * is kept (one OR beside the call): an empty read returns 0, so the OR of the results stays 0
 * unless a call failed or returned data, and that run is then printed as not run. */
static long time_reads(int fd, uint32_t *samples, long count, int per)
{
	char buffer[4];
	long results = 0;

	for (long i = 0; i < count; i++) {
		uint64_t begin = stamp_begin();

		for (int k = 0; k < per; k++)
			results |= read(fd, buffer, 0);
		samples[i] = (uint32_t)(stamp_end() - begin);
	}
	return results;
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 200000);
	long rounds = n >= ROUNDS * BATCH ? ROUNDS : 1;
	long singles = n / rounds, batches = singles / BATCH > 0 ? singles / BATCH : 1;  /* per round */
	struct course_file files[MAX_KINDS];
	int kinds = course_files(files, MAX_KINDS), usable[MAX_KINDS];
	uint32_t *single[MAX_KINDS], *batched[MAX_KINDS], *stamps = sample_buffer(n);
	long single_results[MAX_KINDS] = {0}, batched_results[MAX_KINDS] = {0};  /* OR of every result */
	char buffer[4], id[48];

	pin_to_one_cpu();
	print_tsc_hz();

	/* The empty stamp pair: the floor every other figure stands on. */
	MEASURE_PAIR("stamp-pair", n, stamps);

	/* Check once that the call really succeeds on each file; timing a call that fails early
	 * would measure an error path instead. */
	for (int k = 0; k < kinds; k++) {
		ssize_t got = read(files[k].fd, buffer, 0);

		usable[k] = got == 0;
		if (!usable[k]) {
			printf("course: skip read.%s read(%d, buf, 0) returned %zd (%s)\n", files[k].kind, files[k].fd, got,
			       got < 0 ? strerror(errno) : "data");
			printf("course: skip read-x8.%s the single read already failed\n", files[k].kind);
			continue;
		}
		single[k] = sample_buffer(singles * rounds);
		batched[k] = sample_buffer(batches * rounds);
		single_results[k] |= time_reads(files[k].fd, single[k], singles, 1);  /* warm-up, overwritten below */
	}

	for (long r = 0; r < rounds; r++)
		for (int k = 0; k < kinds; k++) {
			if (!usable[k])
				continue;
			single_results[k] |= time_reads(files[k].fd, single[k] + r * singles, singles, 1);
			batched_results[k] |= time_reads(files[k].fd, batched[k] + r * batches, batches, BATCH);
		}

	for (int k = 0; k < kinds; k++) {
		if (!usable[k])
			continue;
		snprintf(id, sizeof(id), "read.%.15s", files[k].kind);
		print_checked(id, "stamp-pair", 1, single[k], singles * rounds, 0, single_results[k], 0);
		/* Eight reads per stamp pair: a finer figure where the counter moves in coarse steps. */
		snprintf(id, sizeof(id), "read-x8.%.15s", files[k].kind);
		print_checked(id, "stamp-pair", BATCH, batched[k], batches * rounds, 0, batched_results[k], 0);
		printf("empty read() of %s (descriptor %d): timed in %ld rounds\n", files[k].kind, files[k].fd, rounds);
		free(single[k]);
		free(batched[k]);
	}
	free(stamps);
	return 0;
}
