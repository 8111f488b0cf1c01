/* exercise-onebyte.c - YOUR VARIANT: what does reading one byte cost, compared with zero?
 *
 * Lesson 3, exercise. Standard input is a disk file. Fill in read_one_byte() so that it
 * reads exactly one byte from the start of the file each time it is called (a plain
 * read() would move the file position and soon hit the end of the file), then run
 * `invoke lesson 3`: the pipeline checks your function and times it beside the reference
 * solution (solutions/exercise-onebyte.c) and beside the empty read of usystime.
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */

static char buffer[4];

static ssize_t read_one_byte(void)
{
	/* TODO: read one byte at offset 0 of standard input into buffer; return what the call returns. */
	(void)buffer;
	return 0;
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
