/* solutions/exercise-onebyte.c - THE REFERENCE SOLUTION: one byte read at offset 0.
 *
 * Lesson 3, exercise: what ../exercise-onebyte.c should become. pread() reads at the
 * offset it is given and leaves the file position alone, so every call finds the same
 * byte in the page cache.
 */
#include "../../common/stamp.h"  /* first: it defines _GNU_SOURCE */

static char buffer[4];

static ssize_t read_one_byte(void)
{
	return pread(STDIN_FILENO, buffer, 1, 0);
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 100000);
	uint32_t *samples = sample_buffer(n);
	ssize_t first = read_one_byte(), second = read_one_byte();

	if (first != 1 || second != 1) {
		printf("course: check onebyte fail read_one_byte() returned %zd then %zd; it must return 1 every time\n",
		       first, second);
		printf("course: skip read-1 not timed until the check passes\n");
		return 0;
	}
	printf("course: check onebyte ok read_one_byte() returned 1 twice in a row\n");
	pin_to_one_cpu();
	print_tsc_hz();
	MEASURE_PAIR("stamp-pair", n, samples);
	MEASURE("read-1", "stamp-pair", n, samples, 1, read_one_byte());
	free(samples);
	return 0;
}
