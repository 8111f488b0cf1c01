/* bytes.c - what one more byte costs: reads of 0 bytes to 4 KiB from standard input.
 *
 * Lesson 7. The article measured 2-3 ticks per byte copied to user space. The program
 * times a read of each size; a regular file is read with pread() at offset 0, so every
 * read finds the same bytes in the page cache; /dev/zero never runs dry. It also times the
 * floor, a call the kernel refuses at once (an invalid number, -ENOSYS), so that the cost of a
 * call and the cost of a byte come from one run on one clock.
 *
 * usage: bytes [samples]
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <errno.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define NR_INVALID 1000L     /* far beyond the last system call number */
#define BUFFER_BYTES 65536  /* the largest read the program can time: sizes beyond it are refused */

static const size_t sizes[] = { 0, 1, 8, 64, 256, 1024, 4096 };

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 20000);
	uint32_t *samples = sample_buffer(n);
	static char buffer[BUFFER_BYTES] __attribute__((aligned(64)));
	struct stat st;
	int regular;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (sizes[i] > sizeof(buffer)) {
			fprintf(stderr, "bytes: a read of %zu bytes does not fit the %zu-byte buffer: make BUFFER_BYTES larger\n",
				sizes[i], sizeof(buffer));
			return 2;
		}
	if (fstat(STDIN_FILENO, &st) != 0) {
		perror("fstat");
		return 1;
	}
	regular = S_ISREG(st.st_mode);
	pin_to_one_cpu();
	print_tsc_hz();
	MEASURE_PAIR("stamp-pair", n, samples);
	/* The floor: through the C library's syscall(), as the reads go through its read() and pread(). */
	MEASURE("invalid-syscall", "stamp-pair", n, samples, -1, syscall(NR_INVALID));
	/* course: region sizes (lesson 7 shows these lines) */
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t size = sizes[i];
		char id[32];
		ssize_t got = regular ? pread(STDIN_FILENO, buffer, size, 0) : read(STDIN_FILENO, buffer, size);

		snprintf(id, sizeof(id), "read-%zu", size);
		/* A short read would time less copying than the size claims: skip, and say so. */
		if (got != (ssize_t)size) {
			printf("course: skip %s read returned %zd of %zu bytes (%s)\n", id, got, size,
			       got < 0 ? strerror(errno) : "short read");
			continue;
		}
		if (regular)
			MEASURE(id, "stamp-pair", n, samples, size, pread(STDIN_FILENO, buffer, size, 0));
		else
			MEASURE(id, "stamp-pair", n, samples, size, read(STDIN_FILENO, buffer, size));
	}
	/* course: end sizes */
	printf("read sizes 0 to 4096 bytes from %s\n", regular ? "a regular file (pread at offset 0)" : "a device");
	free(samples);
	return 0;
}
