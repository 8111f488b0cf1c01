/* solutions/exercise-int80.c - THE REFERENCE SOLUTION: getppid() through int $0x80.
 *
 * Lesson 1, exercise: what ../exercise-int80.c should become. getppid is number 64 in
 * the 32-bit table (arch/x86/entry/syscalls/syscall_32.tbl). int $0x80 saves every
 * register itself, so only eax (number in, result out) appears in the constraints.
 */
#include "../../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>
#include <sys/wait.h>

static long int80_getppid(void)
{
	long ret;

	__asm__ __volatile__("int $0x80" : "=a"(ret) : "a"(64L) : "memory");
	return ret;
}

/* Without IA32 emulation int $0x80 kills the process: try it in a child first. */
static int int80_available(void)
{
	int status;
	pid_t child = fork();

	if (child == 0) {
		long ret;

		__asm__ __volatile__("int $0x80" : "=a"(ret) : "a"(20L) : "memory"); /* getpid, harmless */
		_exit(ret > 0 ? 0 : 1);
	}
	return child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 100000);
	uint32_t *samples = sample_buffer(n);
	long got, expected = getppid();

	if (!int80_available()) {
		printf("course: check int80 na this kernel has no IA32 emulation: int $0x80 cannot run here\n");
		return 0;
	}
	got = int80_getppid();

	if (got != expected) {
		printf("course: check int80 fail int80_getppid() returned %ld, getppid() returned %ld\n", got, expected);
		printf("course: skip getppid not timed until the check passes\n");
		return 0;
	}
	printf("course: check int80 ok int80_getppid() returned %ld, as getppid() did\n", got);
	pin_to_one_cpu();
	print_tsc_hz();
	MEASURE_PAIR("stamp-pair", n, samples);
	MEASURE("getppid", "stamp-pair", n, samples, expected, int80_getppid());
	free(samples);
	return 0;
}
