/* callsite.c - an empty read() between two time stamps, in a function of its own so
 * that the call site can be disassembled.
 *
 * Lesson 2. The pipeline compiles this file and runs objdump on timed_empty_read()
 * and on the C library's read(), to show what the compiler made of the call and where
 * the `syscall` instruction really is.
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */

/* noinline keeps the function whole in the binary, under a symbol objdump can find. */
__attribute__((noinline)) uint64_t timed_empty_read(int fd, void *buffer)
{
	uint64_t start = stamp_begin();

	if (read(fd, buffer, 0) < 0)
		return 0;
	return stamp_end() - start;
}

int main(void)
{
	char buffer[4];

	printf("one empty read(), stamp pair included: %llu ticks\n",
	       (unsigned long long)timed_empty_read(0, buffer));
	return 0;
}
