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
	long failed = 0;
	ssize_t ret;

	ret = kernel_read(file, &byte, 0, &pos);
	course_print("meta kernel_read_returned=%zd", ret);
	/* kernel_read() refuses files that have ->read (it wants ->read_iter only): record
	 * the refusal as the result, since that is what a 6.x module meets. Any other error is
	 * the file's own (an eventfd refuses reads of fewer than 8 bytes): not timed either. */
	if (ret == -EINVAL && file->f_op->read) {
		course_print("skip kernel-read kernel_read() refused this file: %zd (EINVAL: the file has a ->read method)",
			     ret);
		return;
	}
	if (ret < 0) {
		course_print("skip kernel-read kernel_read() returned %zd on this file: an error path, not timed", ret);
		return;
	}
	/* Every return value is kept (one OR, beside the call): a call that starts failing
	 * halfway must not turn the samples into timings of an error path. */
	KSTAMP_COLLECT(samples, buf, false, failed |= kernel_read(file, &byte, 0, &pos));
	kstamp_print_read("kernel-read", "stamp-pair", buf, samples, failed);
}

static void measure_read_iter(struct file *file, u32 *buf)
{
	struct kiocb kiocb;
	struct kvec kvec = { .iov_base = NULL, .iov_len = 0 };
	struct iov_iter iter;
	long failed = 0;
	ssize_t ret;

	if (!file->f_op->read_iter) {
		course_print("skip read-iter this file has no ->read_iter method");
		return;
	}
	/* Calling the method skips vfs_read()'s checks, so a failing call would be timed as
	 * gladly as a read: try it once, untimed, and time it only if it succeeds. */
	init_sync_kiocb(&kiocb, file);
	iov_iter_kvec(&iter, READ, &kvec, 1, 0);
	ret = file->f_op->read_iter(&kiocb, &iter);
	course_print("meta read_iter_returned=%zd", ret);
	if (ret < 0) {
		course_print("skip read-iter ->read_iter (%ps) returned %zd: an error path, not timed",
			     file->f_op->read_iter, ret);
		return;
	}
	KSTAMP_COLLECT(samples, buf, false, ({
		init_sync_kiocb(&kiocb, file);
		iov_iter_kvec(&iter, READ, &kvec, 1, 0);
		failed |= file->f_op->read_iter(&kiocb, &iter);
	}));
	kstamp_print_read("read-iter", "stamp-pair", buf, samples, failed);
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
		const char *unreadable = kstamp_unreadable(file);

		describe_stdin(file);
		if (unreadable) {
			/* vfs_read() would refuse it, and kernel_read() would warn: neither is timed. */
			course_print("skip kernel-read %s", unreadable);
			course_print("skip read-iter %s", unreadable);
		} else {
			measure_kernel_read(file, buf);
			measure_read_iter(file, buf);
		}
		fput(file);
	}
	kvfree(buf);
	course_print("meta done=1");
	return -EINVAL; /* measured; do not stay loaded */
}

module_init(ksystime_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Kernel System Calls, measured: lesson 4, timing kernel_read() from a module");
