/* entry.c - the cheapest ways into the kernel today, and a call that never enters it.
 *
 * Lesson 8. An invalid system call number is refused right after the entry code, so it
 * times the crossing alone. int $0x80, the entry of the article's day, still exists for
 * 32-bit programs where the kernel has IA32 emulation. clock_gettime() normally runs in
 * the vDSO, kernel-provided code mapped into the process, without entering the kernel.
 *
 * usage: entry [samples]
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define NR_INVALID 1000L	/* far beyond the last system call number */
#define NR32_GETPPID 64L	/* getppid in arch/x86/entry/syscalls/syscall_32.tbl */

static inline long raw_syscall0(long number)
{
	long ret;

	__asm__ __volatile__("syscall" : "=a"(ret) : "a"(number) : "rcx", "r11", "memory");
	return ret;
}

static inline long int80_syscall0(long number)
{
	long ret;

	__asm__ __volatile__("int $0x80" : "=a"(ret) : "a"(number) : "memory");
	return ret;
}

/* Try int $0x80 in a child first: without IA32 emulation it kills the process. */
static int int80_works(void)
{
	int status;
	pid_t child = fork();

	if (child == 0)
		_exit(int80_syscall0(NR32_GETPPID) == getppid() ? 0 : 1);
	if (child < 0 || waitpid(child, &status, 0) < 0)
		return 0;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 100000);
	uint32_t *samples = sample_buffer(n);
	struct timespec now;
	long parent = getppid();  /* what each timed getppid must return */

	printf("syscall(%ld) returns %ld (-ENOSYS is %d)\n", NR_INVALID, raw_syscall0(NR_INVALID), -ENOSYS);
	pin_to_one_cpu();
	print_tsc_hz();
	MEASURE_PAIR("stamp-pair", n, samples);
	MEASURE("invalid-syscall", "stamp-pair", n, samples, -ENOSYS, raw_syscall0(NR_INVALID));
	MEASURE("getppid-syscall", "stamp-pair", n, samples, parent, raw_syscall0(SYS_getppid));
	if (int80_works()) {
		printf("int $0x80 works here: the kernel has IA32 emulation\n");
		MEASURE("getppid-int80", "stamp-pair", n, samples, parent, int80_syscall0(NR32_GETPPID));
	} else {
		printf("course: skip getppid-int80 int $0x80 is not available: the kernel has no IA32 emulation\n");
	}
	MEASURE("clock_gettime-vdso", "stamp-pair", n, samples, 0, clock_gettime(CLOCK_MONOTONIC, &now));
	MEASURE("clock_gettime-syscall", "stamp-pair", n, samples, 0,
		syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &now));
	free(samples);
	return 0;
}
