/* readtrace.c - one empty read() of each kind of file, marked in the kernel's trace.
 *
 * Lesson 2. The pipeline runs this program only inside the course's VM (never on this
 * machine's kernel unless --kernel-runner host-kernel was asked for), after the guest helper
 * (course/kernel_guest.py) has set ftrace's function_graph tracer up with tracing off. Given
 * the tracing folder as its argument, the program limits tracing to itself, turns it on, writes
 * a marker into the trace before and after each read, and turns it off: the call graph between
 * two markers is one read(fd, buf, 0), from x64_sys_call() down to the file's own method.
 * Each kind is read in ROUNDS interleaved rounds: an interrupt that lands in one read adds its
 * own work to that read's graph, and the pipeline keeps the shortest graph of each kind.
 *
 * Run by hand without an argument, it only makes the reads and prints what they returned.
 */
#include "../common/stamp.h" /* first: it defines _GNU_SOURCE; course_files() */

#include <errno.h>
#include <fcntl.h>

#define MAX_FILES 8
#define ROUNDS 3

static int open_in(const char *folder, const char *name)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", folder, name);
	fd = open(path, O_WRONLY);
	if (fd < 0) {
		fprintf(stderr, "readtrace: cannot open %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return fd;
}

/* One write(), so that the marker is one line of the trace. No stdio here: printf() would
 * add system calls (fstat, brk) between the markers. */
static void mark(int marker, const char *text)
{
	if (marker >= 0 && write(marker, text, strlen(text)) < 0) {
		fprintf(stderr, "readtrace: cannot write the trace marker: %s\n", strerror(errno));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	struct course_file files[MAX_FILES];
	long returned[ROUNDS][MAX_FILES];
	int errors[ROUNDS][MAX_FILES];
	int count = course_files(files, MAX_FILES);
	int marker = -1, on = -1;
	char buffer[1], text[256];

	if (argc > 1) {
		/* Only this process is traced: the helper waiting for it, and anything else the
		 * guest runs meanwhile, stay out of the call graphs. */
		int pid = open_in(argv[1], "set_ftrace_pid");

		snprintf(text, sizeof(text), "%d\n", (int)getpid());
		if (write(pid, text, strlen(text)) < 0) {
			fprintf(stderr, "readtrace: cannot write set_ftrace_pid: %s\n", strerror(errno));
			return 1;
		}
		close(pid);
		marker = open_in(argv[1], "trace_marker");
		on = open_in(argv[1], "tracing_on");
		mark(on, "1");
	}
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < count; i++) {
			snprintf(text, sizeof(text), "course-trace begin %s", files[i].kind);
			mark(marker, text);
			returned[round][i] = read(files[i].fd, buffer, 0);
			errors[round][i] = returned[round][i] < 0 ? errno : 0;
			snprintf(text, sizeof(text), "course-trace end %s returned %ld", files[i].kind,
				 returned[round][i]);
			mark(marker, text);
		}
	}
	mark(on, "0");
	for (int round = 0; round < ROUNDS; round++)
		for (int i = 0; i < count; i++)
			printf("round %d: read(%s, buf, 0) = %ld%s%s\n", round + 1, files[i].kind, returned[round][i],
			       errors[round][i] ? " " : "", errors[round][i] ? strerror(errors[round][i]) : "");
	return 0;
}
