/* ksyslayers.c - the same empty read, with one layer of the system call skipped at a time.
 *
 * Lesson 6. From the top of the kernel's read path to its bottom:
 *   ksys-read         the system call's body, called directly (fd lookup + vfs_read)
 *   f-op-read         the file's ->read method, where it still has one
 *   read-iter         the file's ->read_iter method, with a kiocb and a kernel iterator
 *   read-iter-cached  the same with the method pointer and request built once
 *   fget-fput, fdget-fdput   the cost of looking the file up from its descriptor
 * ksys_read is not exported to modules; it is found with kallsyms_lookup_name (itself
 * found through a kprobe), which only works where indirect calls to any function are
 * allowed: on a CPU enforcing IBT it would crash, so the variant is skipped there.
 * As in the article, init returns an error: the module measures and leaves.
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/uio.h>
#include <asm/cpufeature.h>

#include "kstamp.h"

static int samples = 10000;
module_param(samples, int, 0444);
MODULE_PARM_DESC(samples, "how many timed runs of each variant (1-100000)");

static bool direct_call = true;
module_param(direct_call, bool, 0444);
MODULE_PARM_DESC(direct_call, "time ksys_read() found by symbol look-up (skipped anyway under IBT)");

typedef ssize_t (*ksys_read_t)(unsigned int fd, char __user *buf, size_t count);

/* kallsyms_lookup_name is no longer exported (5.7); a kprobe on it reveals its address. */
static unsigned long lookup_symbol(const char *name)
{
	struct kprobe probe = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long (*kallsyms_lookup_name_fn)(const char *name);

	if (register_kprobe(&probe) < 0)
		return 0;
	kallsyms_lookup_name_fn = (void *)probe.addr;
	unregister_kprobe(&probe);
	return kallsyms_lookup_name_fn ? kallsyms_lookup_name_fn(name) : 0;
}

static void measure_ksys_read(u32 *buf)
{
	ksys_read_t ksys_read_fn;
	long failed = 0;
	ssize_t ret;

	if (!direct_call) {
		course_print("skip ksys-read not asked for (direct_call=0)");
		return;
	}
	if (cpu_feature_enabled(X86_FEATURE_IBT)) {
		course_print("skip ksys-read unsafe here: IBT is enforced and ksys_read has no ENDBR landing pad");
		return;
	}
	ksys_read_fn = (ksys_read_t)lookup_symbol("ksys_read");
	if (!ksys_read_fn) {
		course_print("skip ksys-read symbol look-up unavailable (no kprobes or no kallsyms)");
		return;
	}
	/* A NULL user buffer: access_ok() accepts it for a 0-byte read, a kernel address it
	 * would refuse with -EFAULT before reaching the file. */
	ret = ksys_read_fn(0, NULL, 0);
	course_print("meta ksys_read_returned=%zd", ret);
	if (ret < 0) {
		course_print("skip ksys-read ksys_read(0, NULL, 0) returned %zd on this file: an error path, not timed",
			     ret);
		return;
	}
	/* Every return value is kept (one OR, beside the call), so that a call failing later is
	 * not timed as a read. */
	KSTAMP_COLLECT(samples, buf, false, failed |= ksys_read_fn(0, NULL, 0));
	kstamp_print_read("ksys-read", "stamp-pair", buf, samples, failed);
}

static void measure_f_op_read(struct file *file, u32 *buf)
{
	ssize_t (*read)(struct file *, char __user *, size_t, loff_t *) = file->f_op->read;
	loff_t pos = 0;
	long failed = 0;
	ssize_t ret;

	if (!read) {
		course_print("skip f-op-read this file has no ->read method, only ->read_iter (%ps)",
			     file->f_op->read_iter);
		course_print("skip f-op-read-cached this file has no ->read method");
		return;
	}
	/* The method is called without vfs_read()'s checks: try it once, untimed, and time it
	 * only if it succeeds (a directory's ->read, for one, returns -EISDIR). */
	ret = read(file, NULL, 0, &pos);
	course_print("meta f_op_read_returned=%zd", ret);
	if (ret < 0) {
		course_print("skip f-op-read ->read (%ps) returned %zd: an error path, not timed", read, ret);
		course_print("skip f-op-read-cached ->read returned %zd: an error path, not timed", ret);
		return;
	}
	KSTAMP_COLLECT(samples, buf, false, failed |= file->f_op->read(file, NULL, 0, &file->f_pos));
	kstamp_print_read("f-op-read", "stamp-pair", buf, samples, failed);
	failed = 0;
	KSTAMP_COLLECT(samples, buf, false, failed |= read(file, NULL, 0, &pos));
	kstamp_print_read("f-op-read-cached", "stamp-pair", buf, samples, failed);
}

static void measure_read_iter(struct file *file, u32 *buf)
{
	ssize_t (*read_iter)(struct kiocb *, struct iov_iter *) = file->f_op->read_iter;
	struct kvec kvec = { .iov_base = NULL, .iov_len = 0 };
	struct kiocb kiocb;
	struct iov_iter iter;
	long failed = 0;
	ssize_t ret;

	if (!read_iter) {
		course_print("skip read-iter this file has no ->read_iter method");
		course_print("skip read-iter-cached this file has no ->read_iter method");
		return;
	}
	/* As ->read above: once, untimed, and timed only if it succeeds. */
	init_sync_kiocb(&kiocb, file);
	iov_iter_kvec(&iter, READ, &kvec, 1, 0);
	ret = read_iter(&kiocb, &iter);
	course_print("meta read_iter_returned=%zd", ret);
	if (ret < 0) {
		course_print("skip read-iter ->read_iter (%ps) returned %zd: an error path, not timed", read_iter, ret);
		course_print("skip read-iter-cached ->read_iter returned %zd: an error path, not timed", ret);
		return;
	}
	KSTAMP_COLLECT(samples, buf, false, ({
		init_sync_kiocb(&kiocb, file);
		iov_iter_kvec(&iter, READ, &kvec, 1, 0);
		failed |= file->f_op->read_iter(&kiocb, &iter);
	}));
	kstamp_print_read("read-iter", "stamp-pair", buf, samples, failed);
	/* Built once: a 0-byte read consumes nothing, so the same request can be reissued. */
	init_sync_kiocb(&kiocb, file);
	iov_iter_kvec(&iter, READ, &kvec, 1, 0);
	failed = 0;
	KSTAMP_COLLECT(samples, buf, false, failed |= read_iter(&kiocb, &iter));
	kstamp_print_read("read-iter-cached", "stamp-pair", buf, samples, failed);
}

static void measure_lookups(u32 *buf)
{
	KSTAMP_MEASURE("fget-fput", "stamp-pair", samples, buf, true, fput(fget(0)));
	KSTAMP_MEASURE("fdget-fdput", "stamp-pair", samples, buf, true, ({
		struct fd f = fdget(0);
		fdput(f);
	}));
}

static int __init ksyslayers_init(void)
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
		course_print("skip ksys-read insmod has no standard input");
	} else {
		const char *unreadable = kstamp_unreadable(file);

		course_print("meta stdin_fs=%s", file->f_inode->i_sb->s_type->name);
		measure_ksys_read(buf); /* through vfs_read(), which checks the file itself */
		if (unreadable) {
			/* The methods below would be called on a file vfs_read() refuses: not timed. */
			course_print("skip f-op-read %s", unreadable);
			course_print("skip f-op-read-cached %s", unreadable);
			course_print("skip read-iter %s", unreadable);
			course_print("skip read-iter-cached %s", unreadable);
		} else {
			measure_f_op_read(file, buf);
			measure_read_iter(file, buf);
		}
		measure_lookups(buf);
		fput(file);
	}
	kvfree(buf);
	course_print("meta done=1");
	return -EINVAL; /* measured; do not stay loaded */
}

module_init(ksyslayers_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Kernel System Calls, measured: lesson 6, skipping layers of read()");
