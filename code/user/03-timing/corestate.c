/* corestate.c - does the empty read slow down when another hardware thread shares the core?
 *
 * Used by `invoke bench`, not by the lesson page. On a shared host the physical core under
 * our virtual CPU may be ours alone for a while, then shared with another tenant's thread
 * (SMT), then ours again. Three probes are interleaved in short windows so that each window
 * sees one state:
 *
 *   read  eight empty reads of standard input between two stamps (lesson 3's read-x8);
 *   wide  eight independent chains of additions: it keeps every integer port busy, so it
 *         slows down when a second hardware thread takes a share of them;
 *   chain one dependent chain of multiplications: its rate is set by the core clock alone,
 *         so it moves only if the clock does.
 *
 * Each window prints one line (plain text; course/bench.py reads it):
 *
 *   window <seconds since start> <read> <wide> <chain>     (medians, ticks incl. the stamp pair)
 *
 * usage: corestate [seconds]      (default 10)
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>

#define SAMPLES_PER_WINDOW 201
#define PAUSE_NS 40000000L  /* between windows, so that the windows span the whole run */

static double seconds_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
}

static uint32_t time_reads(char *buffer)
{
	uint64_t begin = stamp_begin();

	for (int i = 0; i < 8; i++)
		if (read(STDIN_FILENO, buffer, 0) != 0)
			abort();  /* checked once in main: a change now would time something else */
	return (uint32_t)(stamp_end() - begin);
}

static uint32_t time_wide(uint64_t seed)
{
	uint64_t a = seed, b = 1, c = 2, d = 3, e = 4, f = 5, g = 6, h = 7;
	uint64_t begin = stamp_begin();

	for (int i = 0; i < 1000; i++)
		__asm__ __volatile__("add $1, %0\n\tadd $1, %1\n\tadd $1, %2\n\tadd $1, %3\n\t"
				     "add $1, %4\n\tadd $1, %5\n\tadd $1, %6\n\tadd $1, %7\n\t"
				     "xor %0, %1\n\txor %2, %3\n\txor %4, %5\n\txor %6, %7"
				     : "+r"(a), "+r"(b), "+r"(c), "+r"(d), "+r"(e), "+r"(f), "+r"(g), "+r"(h));
	return (uint32_t)(stamp_end() - begin);
}

static uint32_t time_chain(uint64_t seed)
{
	uint64_t x = seed | 1;
	uint64_t begin = stamp_begin();

	for (int i = 0; i < 1000; i++)
		__asm__ __volatile__("imul %0, %0" : "+r"(x));
	return (uint32_t)(stamp_end() - begin);
}

static uint32_t median_of(uint32_t *values, int n)
{
	qsort(values, n, sizeof(*values), compare_u32);
	return values[n / 2];
}

int main(int argc, char **argv)
{
	double duration = argc > 1 ? strtod(argv[1], NULL) : 10.0;
	uint32_t reads[SAMPLES_PER_WINDOW], wide[SAMPLES_PER_WINDOW], chain[SAMPLES_PER_WINDOW];
	struct timespec start, pause = {0, PAUSE_NS};
	char buffer[4];
	ssize_t got;

	if (!(duration > 0 && duration <= 600)) {
		fprintf(stderr, "duration must be between 0 and 600 seconds, got %s\n", argv[1]);
		return 2;
	}
	got = read(STDIN_FILENO, buffer, 0);
	if (got != 0) {
		fprintf(stderr, "an empty read of standard input returned %zd (%s); give it /dev/null\n", got,
			got < 0 ? strerror(errno) : "data");
		return 2;
	}
	pin_to_one_cpu();
	print_tsc_hz();
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (seconds_since(&start) < duration) {
		double at = seconds_since(&start);

		for (int i = 0; i < SAMPLES_PER_WINDOW; i++) {
			reads[i] = time_reads(buffer);
			wide[i] = time_wide(i);
			chain[i] = time_chain(i);
		}
		printf("window %.3f %u %u %u\n", at, median_of(reads, SAMPLES_PER_WINDOW),
		       median_of(wide, SAMPLES_PER_WINDOW), median_of(chain, SAMPLES_PER_WINDOW));
		nanosleep(&pause, NULL);
	}
	return 0;
}
