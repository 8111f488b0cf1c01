/* timing.c - a canned program for the listings of the extension's tests */
#include <unistd.h>

static char buf[1];

/* Time one empty read. */
static long empty_read(void)
{
	return read(0, buf, 0);
}

int main(void)
{
	long total = 0;

	/* course: region loop */
	for (int i = 0; i < 10; i++)
		total += empty_read();
	/* course: end loop */
	return total != 0;
}
