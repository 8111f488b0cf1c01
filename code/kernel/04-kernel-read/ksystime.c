/* ksystime.c - an empty read of insmod's standard input, timed from inside the kernel.
 *
 * Lesson 4. In 2000 a module called read() after set_fs(get_ds()) lifted the user/kernel
 * address check. set_fs() is gone (x86: 5.10, everywhere: 5.18); kernel_read() is what
 * replaced it, and ->read_iter with a kernel-memory iterator is what kernel_read() does
 * underneath. The module measures both, prints its figures to the kernel log and, as the
 * article's did, refuses to stay loaded: init returns -EINVAL, so it can be loaded again
 * for the next measurement and nothing of it remains in the kernel.
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/uio.h>

#include "kstamp.h"

static int samples = 10000;
module_param(samples, int, 0444);
MODULE_PARM_DESC(samples, "how many timed runs of each variant (1-100000)");

/* Facts about the file behind fd 0, so a page can say what was really read. */
static void describe_stdin(struct file *file)
{
	course_print("meta stdin_fs=%s stdin_read=%ps stdin_read_iter=%ps", file->f_inode->i_sb->s_type->name,
		     file->f_op->read, file->f_op->read_iter);
}

static void measure_kernel_read(struct file *file, u32 *buf)
{
	char byte;
	loff_t pos = 0;
	ssize_t ret = kernel_read(file, &byte, 0, &pos);

	/* kernel_read() refuses files that have ->read (it wants ->read_iter only): record
	 * the refusal as the result, since that is what a 6.x module meets. */
	if (ret < 0) {
		course_print("skip kernel-read kernel_read() refused this file: %zd (%s)", ret,
			     ret == -EINVAL ? "EINVAL: the file has a ->read method" : "error");
		return;
	}
	KSTAMP_MEASURE("kernel-read", "stamp-pair", samples, buf, false, kernel_read(file, &byte, 0, &pos));
}

static void measure_read_iter(struct file *file, u32 *buf)
{
	struct kiocb kiocb;
	struct kvec kvec = { .iov_base = NULL, .iov_len = 0 };
	struct iov_iter iter;

	if (!file->f_op->read_iter) {
		course_print("skip read-iter this file has no ->read_iter method");
		return;
	}
	KSTAMP_MEASURE("read-iter", "stamp-pair", samples, buf, false, ({
		init_sync_kiocb(&kiocb, file);
		iov_iter_kvec(&iter, READ, &kvec, 1, 0);
		file->f_op->read_iter(&kiocb, &iter);
	}));
}

static int __init ksystime_init(void)
{
	struct file *file;
	u32 *buf;

	if (samples < 1 || samples > 100000)
		return -EINVAL;
	buf = kvmalloc_array(samples, sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	kstamp_print_rate();
	KSTAMP_MEASURE("stamp-pair", NULL, samples, buf, true, (void)0);

	file = fget(0); /* insmod's standard input */
	if (!file) {
		course_print("skip kernel-read insmod has no standard input");
	} else {
		describe_stdin(file);
		measure_kernel_read(file, buf);
		measure_read_iter(file, buf);
		fput(file);
	}
	kvfree(buf);
	course_print("meta done=1");
	return -EINVAL; /* measured; do not stay loaded */
}

module_init(ksystime_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Kernel System Calls, measured: lesson 4, timing kernel_read() from a module");
