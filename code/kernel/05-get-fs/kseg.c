/* kseg.c - the segment selectors the kernel itself runs with, and the FS base of insmod.
 *
 * Lesson 5. The kernel's code and data segments are flat like user space's, but in
 * ring 0; FS and GS bases are per task (GS holds the per-CPU area while in the kernel).
 * The module prints what it finds, then leaves: init returns an error.
 */
#include <linux/module.h>
#include <linux/sched.h>
#include <asm/processor.h>
#include <asm/segment.h>

#include "kstamp.h"

static void show(const char *name, unsigned short selector)
{
	if (selector == 0) {
		printk(KERN_DEBUG KBUILD_MODNAME ": %s = 0x0000  the null selector\n", name);
		return;
	}
	printk(KERN_DEBUG KBUILD_MODNAME ": %s = 0x%04x  index %2u, %s, ring %u\n", name, selector, selector >> 3,
	       selector & 4 ? "LDT" : "GDT", selector & 3);
}

static int __init kseg_init(void)
{
	unsigned short cs, ds, ss, fs, gs;

	__asm__("mov %%cs, %0" : "=r"(cs));
	__asm__("mov %%ds, %0" : "=r"(ds));
	__asm__("mov %%ss, %0" : "=r"(ss));
	__asm__("mov %%fs, %0" : "=r"(fs));
	__asm__("mov %%gs, %0" : "=r"(gs));
	show("cs", cs);
	show("ss", ss);
	show("ds", ds);
	show("fs", fs);
	show("gs", gs);
	printk(KERN_DEBUG KBUILD_MODNAME ": __KERNEL_CS = 0x%04x, __KERNEL_DS = 0x%04x, __USER_CS = 0x%04x, "
	       "__USER_DS = 0x%04x\n", __KERNEL_CS, __KERNEL_DS, __USER_CS, __USER_DS);
	printk(KERN_DEBUG KBUILD_MODNAME ": FS base of the task that loads me (%s): %#lx\n", current->comm,
	       current->thread.fsbase);
	course_print("meta done=1");
	return -EINVAL; /* looked; do not stay loaded */
}

module_init(kseg_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Kernel System Calls, measured: lesson 5, the kernel's segment selectors");
