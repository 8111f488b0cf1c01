/* segments.c - the segment registers of a 64-bit process, and what FS holds today.
 *
 * Lesson 5. In Linux 2.0 the kernel reached user memory through the FS segment
 * register, hence get_fs()/set_fs(). In a 64-bit process the segments are flat (base 0,
 * no limit) except FS and GS, whose bases are free: FS points at the current thread's
 * thread-local storage (TLS), where the C library keeps errno among others.
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <asm/prctl.h>
#include <errno.h>
#include <sys/syscall.h>

static __thread long thread_local_value = 42;

static void show(const char *name, unsigned short selector)
{
	/* A selector: index into a descriptor table (bits 3-15), table (bit 2), privilege (0-1). */
	if (selector == 0) {
		printf("%s = 0x0000  the null selector (unused in 64-bit mode)\n", name);
		return;
	}
	printf("%s = 0x%04x  index %2u, %s, ring %u\n", name, selector, selector >> 3,
	       selector & 4 ? "LDT" : "GDT", selector & 3);
}

int main(void)
{
	unsigned short cs, ds, es, fs, gs, ss;
	unsigned long fs_base = 0, tcb_self;

	__asm__("mov %%cs, %0" : "=r"(cs));
	__asm__("mov %%ds, %0" : "=r"(ds));
	__asm__("mov %%es, %0" : "=r"(es));
	__asm__("mov %%fs, %0" : "=r"(fs));
	__asm__("mov %%gs, %0" : "=r"(gs));
	__asm__("mov %%ss, %0" : "=r"(ss));
	show("cs", cs);
	show("ss", ss);
	show("ds", ds);
	show("es", es);
	show("fs", fs);
	show("gs", gs);

	if (syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_base) != 0)
		perror("arch_prctl(ARCH_GET_FS)");
	/* glibc's thread control block starts with a pointer to itself, at %fs:0. */
	__asm__("mov %%fs:0, %0" : "=r"(tcb_self));
	printf("\nFS base, from arch_prctl(ARCH_GET_FS): %#lx\n", fs_base);
	printf("the quadword at %%fs:0 (the TCB's pointer to itself): %#lx%s\n", tcb_self,
	       tcb_self == fs_base ? "  (the same address)" : "");
	printf("a __thread variable lives at %p, %ld bytes below the FS base\n", (void *)&thread_local_value,
	       (long)(fs_base - (unsigned long)&thread_local_value));
	printf("errno lives in TLS too: &errno = %p\n", (void *)&errno);
	return 0;
}
