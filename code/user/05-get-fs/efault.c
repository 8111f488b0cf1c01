/* efault.c - read() into a kernel address fails with EFAULT, even for zero bytes.
 *
 * Lesson 5. The check that addr_limit (and set_fs) used to steer is still there, as
 * access_ok(): a user pointer must lie below the top of user space. A kernel address is
 * refused before the driver is called; NULL passes that check (it is a user address)
 * and fails only when the copy faults.
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>

static void try_read(int fd, void *buffer, size_t count, const char *what)
{
	ssize_t got;

	errno = 0;
	got = read(fd, buffer, count);
	printf("read(pipe, %-22s %zu) = %2zd   errno = %s\n", what, count, got, got < 0 ? strerror(errno) : "-");
}

int main(void)
{
	/* An address in the kernel's half of the address space (its text, without KASLR). */
	void *kernel_address = (void *)0xffffffff81000000UL;
	char buffer[8];
	int fds[2];

	if (pipe(fds) != 0) {
		perror("pipe");
		return 1;
	}
	if (write(fds[1], "abcdefgh", 8) != 8) {
		perror("write");
		return 1;
	}
	try_read(fds[0], buffer, 1, "a stack buffer,");
	try_read(fds[0], kernel_address, 1, "0xffffffff81000000,");
	try_read(fds[0], kernel_address, 0, "0xffffffff81000000,");
	try_read(fds[0], NULL, 1, "NULL,");
	try_read(fds[0], NULL, 0, "NULL,");
	return 0;
}
