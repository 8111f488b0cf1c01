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
 * An invalid system call takes its turn in the same rounds: the kernel refuses it right
 * after the entry code, so it is the entry and exit alone, the part of each read that a
 * caller already in the kernel skips (lessons 4 and 6 compare the two, in one run).
 *
 * usage: usystime [samples per kind of file]
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>

#define MAX_KINDS 8
#define ROUNDS 100  /* each kind gets a turn this many times */
#define BATCH 8     /* reads per stamp pair in the batched measurement */
#define NR_INVALID 1000L  /* far beyond the last system call number: -ENOSYS after the entry */

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

/* Append `count` samples to `samples`, each timing one invalid system call. Every result is
 * kept as the reads' are: each call must return -1 (-ENOSYS), so the OR of result XOR -1 stays 0. */
static long time_invalid(uint32_t *samples, long count)
{
	long results = 0;

	for (long i = 0; i < count; i++) {
		uint64_t begin = stamp_begin();

		results |= syscall(NR_INVALID) ^ -1L;
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
	uint32_t *single[MAX_KINDS], *batched[MAX_KINDS], *stamps = sample_buffer(n), *invalid = NULL;
	long single_results[MAX_KINDS] = {0}, batched_results[MAX_KINDS] = {0};  /* OR of every result */
	long invalid_results = 0;  /* OR of every invalid call's result XOR -1 */
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

	/* The floor: timed only if the kernel really refuses the call (-ENOSYS), like a read that succeeds. */
	errno = 0;
	if (syscall(NR_INVALID) == -1 && errno == ENOSYS) {
		invalid = sample_buffer(singles * rounds);
		invalid_results |= time_invalid(invalid, singles);  /* warm-up, overwritten below */
	} else {
		printf("course: skip invalid-syscall syscall(%ld) did not fail with ENOSYS (%s)\n", NR_INVALID,
		       strerror(errno));
	}

	for (long r = 0; r < rounds; r++) {
		for (int k = 0; k < kinds; k++) {
			if (!usable[k])
				continue;
			single_results[k] |= time_reads(files[k].fd, single[k] + r * singles, singles, 1);
			batched_results[k] |= time_reads(files[k].fd, batched[k] + r * batches, batches, BATCH);
		}
		if (invalid)
			invalid_results |= time_invalid(invalid + r * singles, singles);
	}

	if (invalid) {
		print_checked("invalid-syscall", "stamp-pair", 1, invalid, singles * rounds, -1, invalid_results, 0);
		printf("invalid system call %ld (-ENOSYS, the entry and exit alone): timed in %ld rounds\n", NR_INVALID,
		       rounds);
		free(invalid);
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
