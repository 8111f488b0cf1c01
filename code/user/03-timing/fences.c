/* fences.c - the start stamp with one fence or with two: what the second lfence changes.
 *
 * Lesson 3. The course's start stamp is `lfence; rdtsc` (stamp_begin() in stamp.h): rdtsc
 * waits for the code before it, but the timed code may start before the counter is read.
 * Intel's start sequence adds a second lfence after rdtsc (stamp_begin_fenced()), which holds
 * the timed code back until the counter has been read. The program times the empty stamp
 * pair and the empty read of each file the pipeline opens (COURSE_FILES; run by hand, its
 * standard input) with each start, in interleaved rounds, so that both see the same moments:
 *
 *   begin1.stamp-pair, begin1.read.<kind>    start: lfence; rdtsc          (the course's)
 *   begin2.stamp-pair, begin2.read.<kind>    start: lfence; rdtsc; lfence  (Intel's)
 *
 * The end stamp is the same for both (rdtscp; lfence), and each read subtracts the pair with
 * its own start. A difference of a few ticks would vanish in a counter that moves in steps of
 * 26 (tscstep.c), so each sample adds up SUMMED separately stamped runs (per=SUMMED): the
 * step then rounds the sum, not each run, and the figures are means of SUMMED runs.
 *
 * usage: fences [samples per start and kind of file]
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>

#define MAX_KINDS 8
#define ROUNDS 100  /* each start and kind gets a turn this many times */
#define SUMMED 16   /* stamped runs added up in one sample */

/* One sample: SUMMED empty stamp pairs, each started with `fenced` or not. */
static uint32_t time_pairs(int fenced)
{
	uint64_t sum = 0;

	for (int k = 0; k < SUMMED; k++) {
		uint64_t begin = fenced ? stamp_begin_fenced() : stamp_begin();

		sum += stamp_end() - begin;
	}
	return (uint32_t)sum;
}

/* One sample: SUMMED empty reads of `fd`, each between its own two stamps. Every result is
 * OR-ed into *results beside the call (an empty read returns 0): a read that fails in any
 * sample turns the whole measurement into a "skip" with the value. */
static uint32_t time_reads(int fd, int fenced, long *results)
{
	char buffer[4];
	uint64_t sum = 0;

	for (int k = 0; k < SUMMED; k++) {
		uint64_t begin = fenced ? stamp_begin_fenced() : stamp_begin();

		*results |= read(fd, buffer, 0);
		sum += stamp_end() - begin;
	}
	return (uint32_t)sum;
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 20000);
	long rounds = n >= ROUNDS ? ROUNDS : 1, per_round = n / rounds;
	struct course_file files[MAX_KINDS];
	int kinds = course_files(files, MAX_KINDS), usable[MAX_KINDS];
	uint32_t *pairs[2], *reads[2][MAX_KINDS];
	long results[2][MAX_KINDS] = {{0}};  /* OR of every read's result, per start and kind */
	char buffer[4], id[48];

	pin_to_one_cpu();
	print_tsc_hz();

	/* As usystime: a call that fails would time an error path instead of the read. */
	for (int k = 0; k < kinds; k++) {
		ssize_t got = read(files[k].fd, buffer, 0);

		usable[k] = got == 0;
		if (!usable[k])
			for (int fenced = 0; fenced < 2; fenced++)
				printf("course: skip begin%d.read.%s read(%d, buf, 0) returned %zd (%s)\n", fenced + 1,
				       files[k].kind, files[k].fd, got, got < 0 ? strerror(errno) : "data");
	}
	for (int fenced = 0; fenced < 2; fenced++) {
		pairs[fenced] = sample_buffer(per_round * rounds);
		for (int k = 0; k < kinds; k++)
			reads[fenced][k] = usable[k] ? sample_buffer(per_round * rounds) : NULL;
	}

	/* Warm-up, then the rounds: both starts in turn, for the pair and each file. */
	for (long i = 0; i < per_round; i++)
		for (int fenced = 0; fenced < 2; fenced++) {
			time_pairs(fenced);
			for (int k = 0; k < kinds; k++)
				if (usable[k])
					time_reads(files[k].fd, fenced, &results[fenced][k]);
		}
	for (long r = 0; r < rounds; r++)
		for (int fenced = 0; fenced < 2; fenced++) {
			for (long i = 0; i < per_round; i++)
				pairs[fenced][r * per_round + i] = time_pairs(fenced);
			for (int k = 0; k < kinds; k++)
				for (long i = 0; usable[k] && i < per_round; i++)
					reads[fenced][k][r * per_round + i] =
						time_reads(files[k].fd, fenced, &results[fenced][k]);
		}

	for (int fenced = 0; fenced < 2; fenced++) {
		char pair_id[32];

		snprintf(pair_id, sizeof(pair_id), "begin%d.stamp-pair", fenced + 1);
		print_samples(pair_id, NULL, SUMMED, pairs[fenced], per_round * rounds);
		for (int k = 0; k < kinds; k++) {
			if (!usable[k])
				continue;
			snprintf(id, sizeof(id), "begin%d.read.%.15s", fenced + 1, files[k].kind);
			print_checked(id, pair_id, SUMMED, reads[fenced][k], per_round * rounds, 0, results[fenced][k], 0);
			free(reads[fenced][k]);
		}
		free(pairs[fenced]);
	}
	printf("start stamps lfence;rdtsc (begin1) and lfence;rdtsc;lfence (begin2): %ld rounds, %d runs a sample\n",
	       rounds, SUMMED);
	return 0;
}
