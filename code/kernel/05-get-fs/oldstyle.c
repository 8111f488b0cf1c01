/* oldstyle.c - a module written the 2.4 way: lift addr_limit, call sys_read(), restore it.
 *
 * Lesson 5. This does not build on a 6.x kernel, and is not meant to: the pipeline
 * compiles it against today's headers and keeps the compiler's errors for the lesson.
 * get_ds() went in 5.1 (commit 736706bee329). set_fs()/get_fs() went from x86 in 5.10;
 * x86 then kept mm_segment_t as an empty dummy struct (include/linux/uaccess.h, without
 * CONFIG_SET_FS) until 5.18 removed it everywhere (commit 967747bbc084). Modules have
 * not been able to call system calls by name for a long time.
 *
 * The article's module called read() itself, through the int $0x80 wrappers that
 * <asm/unistd.h> defined under __KERNEL_SYSCALLS__; calling sys_read() directly, as
 * this file does, was the variant the article reached on the PC only with "nasty hacks"
 * (216 ticks, lesson 6).
 */
#include <linux/module.h>
#include <linux/fs.h>
#include <linux/uaccess.h>

static int __init oldstyle_init(void)
{
	char buffer[4];
	mm_segment_t saved = get_fs();	/* remember the caller's limit */

	set_fs(get_ds());		/* no limit: kernel pointers pass */
	sys_read(0, buffer, 0);		/* the empty read of the article */
	set_fs(saved);			/* put the limit back before returning */
	return -EINVAL;
}

module_init(oldstyle_init);
MODULE_LICENSE("GPL");
