/* stamp.h - fenced time stamps, sample recording and the course's output protocol.
 *
 * Every user-space program of the course includes this header, so that all of them
 * time code the same way and print results the pipeline can parse:
 *
 *   course: measure <id> unit=ticks samples=<n> [subtract=<id>] [per=<k>]   (or another unit)
 *   course: hist <id> <value>x<count> <value>x<count> ...   (repeated as needed)
 *   course: skip <id> <reason>
 *   course: meta <key>=<value>
 *   course: check <exercise> ok|fail|na <detail>   (whether an exercise's variant works;
 *                                                   na: it cannot be checked on this machine)
 *
 * per=<k> says that each sample timed k runs of the code (between two stamps, or added up
 * from k stamped runs): the pipeline subtracts the stamp pair's cost, then divides by k.
 *
 * Lines without the "course: " prefix are ordinary output and are kept as text.
 */
#ifndef COURSE_STAMP_H
#define COURSE_STAMP_H

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* rdtsc alone may run before earlier instructions finish or after later ones start.
 * Start: lfence before rdtsc makes it wait for earlier code, but the timed code may still
 * begin before the counter is read (Intel's full sequence, lfence; rdtsc; lfence, has a
 * second fence that this one leaves out). End: rdtscp waits for the timed code and the
 * lfence after it keeps later code from starting early. */
static inline uint64_t stamp_begin(void)
{
	uint32_t lo, hi;
	__asm__ __volatile__("lfence\n\trdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

/* Intel's full start sequence: the second lfence holds the timed code back until the counter
 * has been read. Not the course's stamp: lesson 3's fences.c times both starts side by side. */
static inline uint64_t stamp_begin_fenced(void)
{
	uint32_t lo, hi;
	__asm__ __volatile__("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t stamp_end(void)
{
	uint32_t lo, hi, aux;
	__asm__ __volatile__("rdtscp\n\tlfence" : "=a"(lo), "=d"(hi), "=c"(aux) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

/* Pin to the last CPU so that one TSC and one cache hierarchy serve every sample. */
static inline void pin_to_one_cpu(void)
{
	cpu_set_t set;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	CPU_SET(cpus > 0 ? cpus - 1 : 0, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		printf("course: meta pinned=no\n");
	else
		printf("course: meta pinned=cpu%ld\n", cpus > 0 ? cpus - 1 : 0);
}

/* The TSC rate, measured against CLOCK_MONOTONIC_RAW over about 50 ms, so that
 * ticks can also be shown as nanoseconds. Printed, and returned for a program's own use. */
static inline double print_tsc_hz(void)
{
	struct timespec t0, t1;
	uint64_t s0, s1;
	double seconds;

	clock_gettime(CLOCK_MONOTONIC_RAW, &t0);
	s0 = stamp_begin();
	do
		clock_gettime(CLOCK_MONOTONIC_RAW, &t1);
	while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 50000000L);
	s1 = stamp_end();
	seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("course: meta tsc_hz=%.0f\n", (s1 - s0) / seconds);
	return (s1 - s0) / seconds;
}

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The "hist" lines of a measurement already announced: a run-length histogram, exact, and
 * short because tick counts cluster on few values. Sorts the samples. */
static inline void print_hist(const char *id, uint32_t *samples, long n)
{
	long i = 0, on_line = 0;

	qsort(samples, n, sizeof(*samples), compare_u32);
	while (i < n) {
		long count = 1;

		while (i + count < n && samples[i + count] == samples[i])
			count++;
		if (on_line == 0)
			printf("course: hist %s", id);
		printf(" %ux%ld", samples[i], count);
		if (++on_line == 24) {
			printf("\n");
			on_line = 0;
		}
		i += count;
	}
	if (on_line)
		printf("\n");
}

/* Announce a measurement in ticks and print its samples. */
static inline void print_samples(const char *id, const char *subtract, long per, uint32_t *samples, long n)
{
	printf("course: measure %s unit=ticks samples=%ld%s%s", id, n, subtract ? " subtract=" : "",
	       subtract ? subtract : "");
	if (per > 1)
		printf(" per=%ld", per);
	printf("\n");
	print_hist(id, samples, n);
}

/* A measurement's samples, or, when a timed call returned something else than `expected`, a
 * "skip" line with the value instead: samples of a call that failed time an error path, not
 * the call. `odd` is every result XOR `expected`, OR-ed together (zero when all were right):
 * where one wrong value recurs, as a failing call's -1 does, `expected ^ odd` is that value. */
static inline void print_checked(const char *id, const char *subtract, long per, uint32_t *samples, long n,
				 long expected, long odd, int error)
{
	if (odd == 0) {
		print_samples(id, subtract, per, samples, n);
		return;
	}
	printf("course: skip %s a timed call returned %ld, not %ld%s%s: its samples timed another path, "
	       "so not run\n",
	       id, expected ^ odd, expected, error ? ": " : "", error ? strerror(error) : "");
}

/* Time `call` n times after as many warm-up runs, keeping every sample and every result.
 * The samples include the stamp pair's own cost; `subtract` names the measurement of that
 * cost and the pipeline removes its minimum. Each result is kept beside the call (one XOR and
 * one OR, as the modules keep theirs), so a call that starts failing halfway through is seen:
 * the measurement is then printed as not run, with the value (see print_checked()). */
#define MEASURE(id, subtract, n, samples, expected, call) MEASURE_BATCH(id, subtract, n, samples, 1, expected, call)

/* The same, each sample timing `per` consecutive runs of `call`: when the counter advances
 * in coarse steps, a batch divides the step by `per`. On the course's AMD EPYC machines the
 * step is tsc_hz / 100 MHz, as if the TSC were updated from a 100 MHz reference clock (our
 * inference: AMD Zen; a hypervisor's TSC scaling multiplies, it does not quantize). Lesson 3's
 * tscstep.c measures the step on each machine. */
#define MEASURE_BATCH(id, subtract, n, samples, per, expected, call)              \
	do {                                                                       \
		long want_ = (long)(expected), odd_ = 0;                           \
		errno = 0;                                                         \
		for (long i_ = 0; i_ < (n); i_++)                                  \
			odd_ |= (long)(call) ^ want_;                              \
		for (long i_ = 0; i_ < (n); i_++) {                                \
			uint64_t t0_ = stamp_begin();                              \
			for (long k_ = 0; k_ < (per); k_++)                        \
				odd_ |= (long)(call) ^ want_;                      \
			uint64_t t1_ = stamp_end();                                \
			(samples)[i_] = (uint32_t)(t1_ - t0_);                     \
		}                                                                  \
		print_checked((id), (subtract), (per), (samples), (n), want_, odd_, errno); \
	} while (0)

/* The empty stamp pair, timed as MEASURE times a call: the cost every other figure subtracts. */
#define MEASURE_PAIR(id, n, samples)                                                 \
	do {                                                                         \
		for (long i_ = 0; i_ < (n); i_++) {                                  \
			uint64_t t0_ = stamp_begin();                                \
			uint64_t t1_ = stamp_end();                                  \
			(samples)[i_] = (uint32_t)(t1_ - t0_);                       \
		}                                                                    \
		print_samples((id), NULL, 1, (samples), (n));                        \
	} while (0)

/* The sample count from argv[1], or a default. */
static inline long sample_count(int argc, char **argv, long fallback)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : fallback;

	if (n <= 0 || n > 10000000) {
		fprintf(stderr, "sample count must be between 1 and 10000000, got %s\n", argv[1]);
		exit(2);
	}
	return n;
}

static inline uint32_t *sample_buffer(long n)
{
	uint32_t *samples = malloc(n * sizeof(*samples));

	if (!samples) {
		perror("malloc");
		exit(1);
	}
	return samples;
}

/* A file the pipeline opened for this run, by kind (lesson.toml's files = [...]). */
struct course_file {
	char kind[16];
	int fd;
};

/* The files listed in COURSE_FILES ("tty=5 file=6 ..."), at most `max`. Run by hand,
 * without it, the program gets its standard input alone, as kind "stdin". */
static inline int course_files(struct course_file *files, int max)
{
	const char *list = getenv("COURSE_FILES");
	int count = 0, used = 0;

	if (!list || !*list) {
		snprintf(files[0].kind, sizeof(files[0].kind), "stdin");
		files[0].fd = STDIN_FILENO;
		return 1;
	}
	while (count < max && sscanf(list, " %15[^= ]=%d%n", files[count].kind, &files[count].fd, &used) == 2) {
		list += used;
		count++;
	}
	if (count == 0 || list[strspn(list, " ")] != '\0') {
		fprintf(stderr, "COURSE_FILES must read \"kind=fd kind=fd ...\" (at most %d), not \"%s\"\n", max,
			getenv("COURSE_FILES"));
		exit(2);
	}
	return count;
}

#endif /* COURSE_STAMP_H */
