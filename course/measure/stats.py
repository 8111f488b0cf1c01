"""Statistics of a measurement, computed exactly from its value -> count histogram."""

from __future__ import annotations

from dataclasses import dataclass

#: Bins of the stored histogram: enough to draw it, small enough to keep in JSON.
HISTOGRAM_BINS = 40


@dataclass(frozen=True)
class Summary:
    """The figures kept for a measurement, after subtracting ``overhead``."""

    samples: int
    min: float
    median: float
    p90: float
    p99: float
    max: float
    overhead: float
    histogram: dict


def percentile(counts: dict[int, int], fraction: float) -> int:
    """The nearest-rank percentile: the smallest value with ``fraction`` of samples at or below it."""
    total = sum(counts.values())
    if total == 0:
        raise ValueError("no samples")
    rank = max(1, -(-int(fraction * total * 1000) // 1000))  # ceil without float drift
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    return max(counts)


def summarize(counts: dict[int, int], overhead: float = 0, per: int = 1) -> Summary:
    """Min, median, p90, p99, max and a binned histogram, each less ``overhead``.

    With ``per`` > 1 each sample timed ``per`` runs of the code: the figures (and the
    histogram's axis) are divided by it after the overhead is subtracted.
    """
    low, high = min(counts), max(counts)
    p99 = percentile(counts, 0.99)
    histogram = bin_histogram(counts, low, p99, overhead)
    histogram["start"] /= per
    histogram["width"] /= per
    return Summary(
        samples=sum(counts.values()),
        min=(low - overhead) / per,
        median=(percentile(counts, 0.5) - overhead) / per,
        p90=(percentile(counts, 0.9) - overhead) / per,
        p99=(p99 - overhead) / per,
        max=(high - overhead) / per,
        overhead=overhead,
        histogram=histogram,
    )


def bin_histogram(counts: dict[int, int], low: int, high: int, overhead: float) -> dict:
    """Counts in equal bins from ``low`` to ``high`` (the p99); what lies above is one number."""
    width = max(1, -(-(high - low + 1) // HISTOGRAM_BINS))
    bins = [0] * (-(-(high - low + 1) // width))
    above = 0
    for value, count in counts.items():
        if value > high:
            above += count
        else:
            bins[(value - low) // width] += count
    return {"start": low - overhead, "width": width, "counts": bins, "above": above}
