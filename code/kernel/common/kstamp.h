/* kstamp.h - time stamps, samples and the course's output protocol inside a kernel module.
 *
 * The kernel-side twin of code/user/common/stamp.h: same protocol, printed to the kernel
 * log at KERN_DEBUG (kept in the log buffer, not echoed to a slow serial console):
 *
 *   <module>: course: measure <id> unit=ticks samples=<n> [subtract=<id>]
 *   <module>: course: hist <id> <value>x<count> ...
 *   <module>: course: skip <id> <reason>
 *   <module>: course: meta <key>=<value>
 *
 * A module that times a read refuses to time an error path: kstamp_unreadable() says whether
 * vfs_read() would refuse the file, the module tries the call once untimed, and
 * KSTAMP_COLLECT() with kstamp_print_read() checks every timed call's return value. A refused
 * read is a "skip" line with the reason, never a figure.
 *
 * Included by exactly one .c file per module (its functions are static).
 */
#ifndef COURSE_KSTAMP_H
#define COURSE_KSTAMP_H

#include <linux/fs.h>
#include <linux/irqflags.h>
#include <linux/preempt.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/types.h>
#include <asm/msr.h>
#include <asm/tsc.h>

#define course_print(fmt, ...) printk(KERN_DEBUG KBUILD_MODNAME ": course: " fmt "\n", ##__VA_ARGS__)

/* rdtsc_ordered() is the kernel's fenced stamp (lfence;rdtsc or rdtscp, as the CPU
 * allows): the same instruction sequence at both ends, so the empty pair measures its
 * own cost exactly. */
static inline u64 kstamp(void)
{
	return rdtsc_ordered();
}

/* The kernel's own calibration of the TSC rate, for figures in nanoseconds. */
static void __maybe_unused kstamp_print_rate(void)
{
	course_print("meta tsc_hz=%lu", (unsigned long)tsc_khz * 1000UL);
}

static int __maybe_unused kstamp_compare(const void *a, const void *b)
{
	u32 x = *(const u32 *)a, y = *(const u32 *)b;

	return (x > y) - (x < y);
}

/* Sort the samples and print them as run-length pairs, a bounded number per line. */
static void __maybe_unused kstamp_print(const char *id, const char *subtract, u32 *samples, int n)
{
	char line[320];
	int i = 0, used = 0, pairs = 0;

	sort(samples, n, sizeof(*samples), kstamp_compare, NULL);
	course_print("measure %s unit=ticks samples=%d%s%s", id, n, subtract ? " subtract=" : "",
		     subtract ? subtract : "");
	while (i < n) {
		int count = 1;

		while (i + count < n && samples[i + count] == samples[i])
			count++;
		used += scnprintf(line + used, sizeof(line) - used, " %ux%d", samples[i], count);
		if (++pairs == 16) {
			course_print("hist %s%s", id, line);
			used = pairs = 0;
		}
		i += count;
	}
	if (pairs)
		course_print("hist %s%s", id, line);
}

/* Why a read of `file` would fail before its driver is reached (vfs_read() checks the same two
 * flags), or NULL: timing a read the kernel would refuse measures an error path, not a read.
 * __kernel_read() even warns (a WARN_ON_ONCE, with a stack trace) for a file without
 * FMODE_READ, so kernel_read() must not be tried on one either. */
static __maybe_unused const char *kstamp_unreadable(const struct file *file)
{
	if (!(file->f_mode & FMODE_READ))
		return "the file is not open for reading (no FMODE_READ: read() would return -EBADF)";
	if (!(file->f_mode & FMODE_CAN_READ))
		return "the file cannot be read (no FMODE_CAN_READ: read() would return -EINVAL)";
	return NULL;
}

/* Print a read's samples, unless one of the timed calls failed (`failed`: every return value
 * OR-ed together, negative if any was an error): then they timed an error path. */
static void __maybe_unused kstamp_print_read(const char *id, const char *subtract, u32 *samples, int n,
					     long failed)
{
	if (failed < 0) {
		course_print("skip %s a timed call returned an error: the samples timed an error path, not a read",
			     id);
		return;
	}
	kstamp_print(id, subtract, samples, n);
}

/* Time `code` n times after as many warm-up runs. With atomic set, each sample runs with
 * preemption and interrupts off: only for code that cannot sleep (a tty or pipe read
 * can, and must never be timed that way). */
#define KSTAMP_MEASURE(id, subtract, n, samples, atomic, code)                   \
	do {                                                                     \
		KSTAMP_COLLECT(n, samples, atomic, code);                        \
		kstamp_print((id), (subtract), (samples), (n));                  \
	} while (0)

/* The samples alone, printed by the caller: for code whose result must be checked first. */
#define KSTAMP_COLLECT(n, samples, atomic, code)                                 \
	do {                                                                     \
		int i_;                                                          \
		unsigned long flags_;                                            \
		for (i_ = 0; i_ < (n); i_++) {                                   \
			code;                                                    \
		}                                                                \
		for (i_ = 0; i_ < (n); i_++) {                                   \
			u64 t0_, t1_;                                            \
			if (atomic) {                                            \
				preempt_disable();                               \
				local_irq_save(flags_);                          \
			}                                                        \
			t0_ = kstamp();                                          \
			code;                                                    \
			t1_ = kstamp();                                          \
			if (atomic) {                                            \
				local_irq_restore(flags_);                       \
				preempt_enable();                                \
			}                                                        \
			(samples)[i_] = (u32)(t1_ - t0_);                        \
			if (!(atomic) && (i_ & 1023) == 1023)                    \
				cond_resched();                                  \
		}                                                                \
	} while (0)

#endif /* COURSE_KSTAMP_H */
