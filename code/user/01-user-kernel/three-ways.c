/* three-ways.c - one system call reached three ways: libc, syscall(), the raw instruction.
 *
 * Lesson 1. getppid() has no arguments and cannot fail, so it isolates the cost of
 * entering and leaving the kernel. The program first shows that the three paths
 * reach the same kernel code (they return the same value), then times each one.
 *
 * usage: three-ways [samples]
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <sys/syscall.h>

/* The raw instruction: the system call number goes in rax, the result comes back in
 * rax; the CPU itself overwrites rcx (return address) and r11 (saved flags). */
static inline long raw_getppid(void)
{
	long ret;

	__asm__ __volatile__("syscall"
			     : "=a"(ret)
			     : "a"((long)SYS_getppid)
			     : "rcx", "r11", "memory");
	return ret;
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 100000);
	uint32_t *samples = sample_buffer(n);
	long parent = getppid();  /* what each timed call must return */

	printf("getppid() through the C library:   %ld\n", (long)getppid());
	printf("syscall(SYS_getppid = %d):         %ld\n", SYS_getppid, syscall(SYS_getppid));
	printf("the syscall instruction, rax = %d: %ld\n", SYS_getppid, raw_getppid());

	pin_to_one_cpu();
	print_tsc_hz();
	MEASURE_PAIR("stamp-pair", n, samples);
	MEASURE("libc", "stamp-pair", n, samples, parent, getppid());
	MEASURE("syscall-function", "stamp-pair", n, samples, parent, syscall(SYS_getppid));
	MEASURE("syscall-instruction", "stamp-pair", n, samples, parent, raw_getppid());
	free(samples);
	return 0;
}
