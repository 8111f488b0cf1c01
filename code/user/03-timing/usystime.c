/* usystime.c - the cost of an empty read() from user space, stamp pair subtracted.
 *
 * Lesson 3. An "empty" read asks for zero bytes, so the figure is the cost of
 * getting into the kernel, finding the file and its read method, and coming back.
 * The pipeline runs this program with standard input redirected from a terminal,
 * a disk file, /dev/null and a pipe: the same call, different read methods.
 *
 * usage: usystime [samples]
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 200000);
	uint32_t *samples = sample_buffer(n);
	char buffer[4];
	ssize_t got;

	pin_to_one_cpu();
	print_tsc_hz();

	/* The empty stamp pair: the floor every other figure stands on. */
	MEASURE("stamp-pair", NULL, n, samples, (void)0);

	/* Check once that the call really succeeds on this standard input; timing a
	 * call that fails early would measure an error path instead. */
	got = read(STDIN_FILENO, buffer, 0);
	if (got != 0) {
		printf("course: skip read read(0, buf, 0) returned %zd (%s)\n", got,
		       got < 0 ? strerror(errno) : "data");
		return 0;
	}
	MEASURE("read", "stamp-pair", n, samples, read(STDIN_FILENO, buffer, 0));
	/* Eight reads per stamp pair: a finer figure where the counter moves in coarse steps. */
	MEASURE_BATCH("read-x8", "stamp-pair", n / 8 > 0 ? n / 8 : 1, samples, 8, read(STDIN_FILENO, buffer, 0));
	printf("empty read() on this standard input returned %zd\n", got);
	free(samples);
	return 0;
}
