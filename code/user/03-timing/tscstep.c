/* tscstep.c - how far the time-stamp counter jumps when it moves, and how often it moves.
 *
 * Lesson 3. A counter that moved on at every tick would show every value. Some processors
 * update it less often and by many ticks at a time (on the course's AMD EPYC machines by
 * about 26 at 2.6 GHz): then every figure of a single call moves by whole steps. The program
 * finds the step in three passes:
 *
 *   1. it reads the counter again and again with a pause of random length between two reads,
 *      so that the differences spread over a few hundred ticks;
 *   2. the step is the largest s (2 ticks or more) on whose multiples the differences line up:
 *      two readings k updates apart differ by k steps, rounded either way when the step is not
 *      a whole number of ticks. A least-squares fit over those multiples gives s to a fraction
 *      of a tick. Where no s lines up, the counter moves by single ticks: the step is 1 (a step
 *      of 2 or 3 ticks is found only when it is a whole number of ticks);
 *   3. it then records spans of exactly SPAN updates between readings of a tight loop (the
 *      number of updates in a span is its length divided by s, to the nearest whole number).
 *
 *   tsc-step   unit=ticks per=SPAN: ticks per update, from spans of SPAN updates
 *   tsc-clock  unit=MHz: updates per second, the TSC rate over each span's step (whole MHz)
 *
 * The clock is a reading of the measured rate and step, not of any document: on AMD Zen it
 * comes out at the 100 MHz of the processor's reference clock, which we take to be where the
 * step comes from (an inference).
 *
 * usage: tscstep [spans]
 */
#include "../common/stamp.h"  /* first: it defines _GNU_SOURCE */
#include <math.h>
#include <stdbool.h>

#define PAIRS 400000     /* differences read in pass 1 */
#define MAX_DIFF 4096    /* longer differences are interrupts, not steps */
#define MAX_PAUSE 511    /* pause between two reads in pass 1, in iterations of one addition */
#define READS 400000     /* readings of the tight loop in pass 3 */
#define SPAN 100         /* updates per span: the step to a hundredth of a tick */
#define ALIGNED 0.75     /* alignment (below) from which differences are multiples of a step */

static uint32_t seen[MAX_DIFF];  /* pass 1: how often each difference was read */
static uint64_t reading[READS];  /* pass 3 */

/* A dependent chain of additions, about one cycle each: a pause the compiler cannot remove. */
static void pause_for(unsigned iterations)
{
	uint64_t x = 0;

	for (unsigned i = 0; i < iterations; i++)
		__asm__ __volatile__("add $1, %0" : "+r"(x));
}

/* How well the differences in [low, high] line up on multiples of s: the length of the mean of
 * exp(2 pi i v / s) over them, 1 when every difference is a whole multiple of s, near 0 when
 * they fall anywhere. A step that is not a whole number of ticks rounds each difference up or
 * down: the alignment then stays high (over 0.8 for a step of 4 ticks or more). */
static double alignment(int low, int high, double s)
{
	double re = 0, im = 0, all = 0;

	for (int v = low; v <= high; v++) {
		if (seen[v] == 0)
			continue;
		re += seen[v] * cos(2 * M_PI * v / s);
		im += seen[v] * sin(2 * M_PI * v / s);
		all += seen[v];
	}
	return all > 0 ? sqrt(re * re + im * im) / all : 0.0;
}

/* Least squares through the origin: v ~ k * s over the differences within a tick of k * s0. */
static double fit_step(int low, int high, double s0)
{
	double vk = 0, kk = 0;

	for (int v = low; v <= high; v++) {
		double k = floor(v / s0 + 0.5);

		if (seen[v] == 0 || k < 1 || fabs(v - k * s0) >= 1.0)
			continue;
		vk += (double)seen[v] * v * k;
		kk += (double)seen[v] * k * k;
	}
	return kk > 0 ? vk / kk : s0;
}

/* The greatest common divisor of the multiples k that the differences sit on (k * s, within a
 * tick), leaving out multiples seen in fewer than one difference in a thousand. */
static int common_multiple(int low, int high, double s, uint64_t total)
{
	long divisor = 0;

	for (int v = low; v <= high; v++) {
		long k = lround(v / s), a, b;

		if (k < 1 || seen[v] * 1000 < total || fabs(v - k * s) >= 1.0)
			continue;
		for (a = divisor, b = k; b != 0;) {  /* Euclid */
			long r = a % b;

			a = b;
			b = r;
		}
		divisor = a;
	}
	return divisor > 0 ? (int)divisor : 1;
}

/* Pass 1 and 2: the step in ticks (1.0 where the counter moves by single ticks). */
static double find_step(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull, total = 0, below = 0, previous;
	int low = -1, high = 0;
	double found = 0, found_alignment = 0;
	bool in_run = false;

	previous = stamp_begin();
	for (long i = 0; i < PAIRS; i++) {
		uint64_t now, diff;

		x ^= x << 13;  /* xorshift: pauses in no fixed rhythm */
		x ^= x >> 7;
		x ^= x << 17;
		pause_for(x & MAX_PAUSE);
		now = stamp_begin();
		diff = now - previous;
		previous = now;
		if (diff < MAX_DIFF) {
			seen[diff]++;
			total++;
		}
	}
	/* Only the body of the distribution: the top 1 % is mostly interrupted pairs. */
	for (int v = 0; v < MAX_DIFF; v++) {
		if (seen[v] == 0)
			continue;
		if (low < 0)
			low = v;
		below += seen[v];
		high = v;
		if (below >= total * 99 / 100)
			break;
	}
	printf("course: meta spread_low=%d spread_high=%d\n", low, high);
	/* Every s/n lines up wherever s does, so the step is the largest s that lines up; it must
	 * fit three times into the spread (any s wider than the spread lines up). The scan moves by
	 * an eighth of the distance that turns the largest multiple a quarter of a turn. */
	for (double s = 2.0; low >= 0 && s <= (high - low) / 3.0; s += fmax(s * s / (8.0 * high), 0.001)) {
		double a = alignment(low, high, s);

		/* the peak of the last run of aligned s: a new run replaces the one before */
		if (a >= ALIGNED && (!in_run || a > found_alignment)) {
			found = s;
			found_alignment = a;
		}
		in_run = a >= ALIGNED;
	}
	if (found == 0)
		return 1.0;
	found = fit_step(low, high, found);
	/* A spread too narrow for the true step finds one of its fractions: the differences then sit
	 * only on every n-th multiple, and the step is n times larger. */
	found *= common_multiple(low, high, found, total);
	printf("course: meta alignment=%.3f\n", alignment(low, high, found));
	return found;
}

int main(int argc, char **argv)
{
	long n = sample_count(argc, argv, 20000), count = 0;
	uint32_t *spans = sample_buffer(n), *clock_mhz = sample_buffer(n);
	double tsc_hz, step;

	pin_to_one_cpu();
	tsc_hz = print_tsc_hz();
	step = find_step();
	printf("course: meta step_fit=%.3f\n", step);

	/* Pass 3: spans of exactly SPAN updates between two readings of a tight loop. */
	for (long i = 0; i < READS; i++)
		reading[i] = stamp_begin();
	for (long i = 0, j = 1; i < READS && count < n; i++) {
		double target = SPAN * step;

		while (j < READS && (double)(reading[j] - reading[i]) < target - step / 2)
			j++;
		if (j == READS)
			break;
		if (fabs((double)(reading[j] - reading[i]) - target) < step / 2) {
			spans[count] = (uint32_t)(reading[j] - reading[i]);
			clock_mhz[count] = (uint32_t)(tsc_hz * SPAN / spans[count] / 1e6 + 0.5);
			count++;
		}
	}
	if (count == 0) {
		printf("course: skip tsc-step no two readings were %d updates apart\n", SPAN);
		printf("course: skip tsc-clock no step was measured\n");
	} else {
		print_samples("tsc-step", NULL, SPAN, spans, count);
		printf("course: measure tsc-clock unit=MHz samples=%ld\n", count);
		print_hist("tsc-clock", clock_mhz, count);
		printf("the counter moves by %.2f ticks at a time: %.2f MHz at %.0f ticks per second\n", step,
		       tsc_hz / step / 1e6, tsc_hz);
	}
	free(spans);
	free(clock_mhz);
	return 0;
}
