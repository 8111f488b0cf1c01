/* fdfile.c - a module written against 6.1's struct fd, for the kernel matrix's tests.
 *
 * Linux 6.12 made struct fd a single word (include/linux/file.h: fd_file() reads the file
 * from it): f.file no longer exists there, so this module builds against 6.1 and not against
 * 6.12, as a module of a lesson does when an API it uses changed.
 */
#include <linux/file.h>
#include <linux/module.h>

#include "kstamp.h"

static int __init fdfile_init(void)
{
	u32 samples[16];
	struct fd f = fdget(0);

	course_print("meta stdin_open=%d", f.file != NULL);
	fdput(f);
	KSTAMP_MEASURE("stamp-pair", NULL, 16, samples, true, (void)0);
	KSTAMP_MEASURE("fdget-fdput", "stamp-pair", 16, samples, true, ({
		struct fd g = fdget(0);
		fdput(g);
	}));
	course_print("meta done=1");
	return -EINVAL; /* measured; do not stay loaded */
}

module_init(fdfile_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Kernel System Calls, measured: a test module that 6.12 refuses");
