/* solutions/exercise-getcpu.c - THE REFERENCE SOLUTION: the getcpu system call.
 *
 * Lesson 8, exercise: what ../exercise-getcpu.c should become. glibc has no wrapper
 * that forces the system call, so syscall() makes it; the node argument may be NULL.
 */
#include "../../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <sys/syscall.h>

static int getcpu_syscall(void)
{
	unsigned int cpu;

	if (syscall(SYS_getcpu, &cpu, NULL, NULL) != 0)
		return -1;
	return (int)cpu;
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 100000);
	uint32_t *samples = sample_buffer(n);
	int from_library, from_kernel;

	pin_to_one_cpu(); /* pinned: both answers must name the same CPU */
	from_library = sched_getcpu();
	from_kernel = getcpu_syscall();
	if (from_kernel != from_library) {
		printf("course: check getcpu fail getcpu_syscall() said %d, sched_getcpu() said %d\n", from_kernel,
		       from_library);
		printf("course: skip getcpu-syscall not timed until the check passes\n");
		return 0;
	}
	printf("course: check getcpu ok both say CPU %d\n", from_kernel);
	print_tsc_hz();
	MEASURE_PAIR("stamp-pair", n, samples);
	MEASURE("sched_getcpu", "stamp-pair", n, samples, from_library, sched_getcpu());
	MEASURE("getcpu-syscall", "stamp-pair", n, samples, from_library, getcpu_syscall());
	free(samples);
	return 0;
}
