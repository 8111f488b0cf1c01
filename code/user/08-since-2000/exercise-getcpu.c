/* exercise-getcpu.c - YOUR VARIANT: which CPU am I on, asked of the kernel.
 *
 * Lesson 8, exercise. sched_getcpu() usually answers without entering the kernel (glibc
 * reads it from the vDSO or from restartable-sequences memory the kernel keeps up to
 * date). Write getcpu_syscall() to ask the kernel itself with the getcpu system call,
 * then run `invoke lesson 8`: the pipeline checks that both agree and times both beside
 * the reference solution (solutions/exercise-getcpu.c).
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <sys/syscall.h>

static int getcpu_syscall(void)
{
	/* TODO: return the CPU number reported by the getcpu system call (see man 2 getcpu). */
	return -1;
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
