/* seccomp.c - what a seccomp filter adds to every system call: the empty read, timed without
 * a filter, under a filter that allows everything, and under one the kernel must run.
 *
 * Lesson 8. A filter cannot be removed once installed, so the three cases are three processes:
 * this one keeps no filter, one child installs an allow-all filter, another adds to it a
 * filter that reads an argument of the call. They take turns on one CPU, a round of samples
 * each, so that all three see the same moments of the machine (lesson 3 times its kinds of
 * file in rounds for the same reason). Each prints what /proc/self/status says of its seccomp
 * state and its speculation controls.
 *
 * Since Linux 5.11 the kernel emulates each new filter once for every system call number
 * (kernel/seccomp.c, seccomp_cache_prepare()): where the result depends on nothing but the
 * number and the architecture and is "allow", a bitmap says so and the filter never runs for
 * that call. The allow-all filter is such a filter; one that loads an argument is not.
 *
 * usage: seccomp [samples]   (reads standard input, /dev/null when the pipeline runs it)
 */
#include "../common/stamp.h" /* first: it defines _GNU_SOURCE */

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define ROUND 1000 /* samples per turn */
#define LANES 3

/* Named seccomp.*: lesson 8's other programs have a stamp-pair of their own. */
static const char *const names[LANES] = {"seccomp.read-unfiltered", "seccomp.read-allow-all",
					 "seccomp.read-filter-runs"};
static const char *const described[LANES] = {"no filter", "allow-all filter",
					     "allow-all filter and a filter that reads args[0]"};

static long install(struct sock_filter *code, unsigned short length)
{
	struct sock_fprog program = {.len = length, .filter = code};

	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program);
}

/* Lane 1: every call allowed whatever its number and arguments; the kernel's cache knows it. */
static long allow_all(void)
{
	struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};

	return install(code, 1);
}

/* Lane 2: also allows everything, but loads the first argument first; the kernel cannot tell
 * that from the number alone, so it runs the filters (both of them) on every call. */
static long reads_an_argument(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};

	return install(code, 2);
}

/* The lines of /proc/self/status that say what the filter changed for this process. */
static void print_status(const char *lane)
{
	static const char *const wanted[] = {"Seccomp:", "Seccomp_filters:", "Speculation_Store_Bypass:",
					     "SpeculationIndirectBranch:"};
	char line[256];
	FILE *status = fopen("/proc/self/status", "r");

	if (!status)
		return;
	while (fgets(line, sizeof(line), status))
		for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
			if (strncmp(line, wanted[i], strlen(wanted[i])) == 0)
				printf("%s: %s", lane, line);
	fclose(status);
}

static void pass(int fd, char token)
{
	if (write(fd, &token, 1) != 1) {
		perror("seccomp: write token");
		exit(1);
	}
}

static char await(int fd)
{
	char token;

	if (read(fd, &token, 1) != 1) {
		perror("seccomp: read token");
		exit(1);
	}
	return token;
}

/* The next round of samples of the empty read; 0, or -1 with `why` said. */
static int take_round(uint32_t *samples, long *taken, long n, char *why, size_t size)
{
	char buffer[1];

	for (long i = 0; i < ROUND && *taken < n; i++, (*taken)++) {
		uint64_t start = stamp_begin();
		long got = read(STDIN_FILENO, buffer, 0);
		uint64_t ticks = stamp_end() - start;

		if (got != 0) {
			snprintf(why, size, "read(0, buf, 0) returned %ld (%s)", got, strerror(errno));
			return -1;
		}
		samples[*taken] = ticks > UINT32_MAX ? UINT32_MAX : (uint32_t)ticks;
	}
	return 0;
}

static void warm_up(long n)
{
	char buffer[1];

	for (long i = 0; i < n; i++)
		if (read(STDIN_FILENO, buffer, 0) != 0)
			break;
}

static void print_lane(int lane, uint32_t *samples, long n, const char *why)
{
	print_status(described[lane]);
	if (why[0])
		printf("course: skip %s %s\n", names[lane], why);
	else
		print_samples(names[lane], "seccomp.stamp-pair", 1, samples, n);
	fflush(stdout);
}

/* A child's lane: install its filters, then a round per 'r' token, until 'p' says print. It
 * answers 'r' for a round taken, 's' when it cannot measure (it then takes no more rounds). */
static void child_lane(int lane, long n, uint32_t *samples, int turn, int done)
{
	char why[160] = "";
	long taken = 0;

	/* A filter needs no_new_privs (or CAP_SYS_ADMIN): set it, as any sandbox does. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || allow_all() < 0 || (lane == 2 && reads_an_argument() < 0))
		snprintf(why, sizeof(why), "no seccomp filter could be installed here: %s", strerror(errno));
	else
		warm_up(n);
	for (;;) {
		if (await(turn) == 'p') {
			print_lane(lane, samples, n, why);
			pass(done, 'd');
			_exit(0);
		}
		if (!why[0])
			take_round(samples, &taken, n, why, sizeof(why));
		pass(done, why[0] ? 's' : 'r');
	}
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 100000);
	uint32_t *samples = sample_buffer(n);
	int turn[LANES][2], done[LANES][2], active[LANES] = {1, 1, 1};
	pid_t children[LANES] = {0};
	char why[160] = "";
	long taken = 0;

	pin_to_one_cpu(); /* children inherit it: all three lanes share one CPU */
	print_tsc_hz();
	MEASURE_PAIR("seccomp.stamp-pair", n, samples);
	fflush(stdout); /* before fork: the children must not print this again */
	for (int lane = 1; lane < LANES; lane++) {
		if (pipe(turn[lane]) < 0 || pipe(done[lane]) < 0) {
			perror("seccomp: pipe");
			return 1;
		}
		children[lane] = fork();
		if (children[lane] < 0) {
			perror("seccomp: fork");
			return 1;
		}
		if (children[lane] == 0)
			child_lane(lane, n, samples, turn[lane][0], done[lane][1]);
	}
	/* Turns: this process's round, then each child's, until every lane has its samples. */
	warm_up(n);
	while (taken < n && !why[0]) {
		take_round(samples, &taken, n, why, sizeof(why));
		for (int lane = 1; lane < LANES; lane++) {
			if (!active[lane])
				continue;
			pass(turn[lane][1], 'r');
			active[lane] = await(done[lane][0]) == 'r';
		}
	}
	print_lane(0, samples, n, why);
	/* The children print in turn, each after the one before has finished. */
	for (int lane = 1; lane < LANES; lane++) {
		pass(turn[lane][1], 'p');
		await(done[lane][0]);
		waitpid(children[lane], NULL, 0);
	}
	free(samples);
	return 0;
}
