from __future__ import annotations

import pytest

from course.measure.stats import HISTOGRAM_BINS, percentile, summarize


def test_percentiles_are_nearest_rank() -> None:
    counts = {value: 1 for value in range(1, 101)}  # 1..100, one sample each
    assert percentile(counts, 0.5) == 50
    assert percentile(counts, 0.9) == 90
    assert percentile(counts, 0.99) == 99
    assert percentile({7: 3}, 0.5) == 7


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile({}, 0.5)


def test_summary_subtracts_the_overhead_from_every_figure() -> None:
    summary = summarize({100: 50, 120: 40, 500: 10}, overhead=30)
    assert (summary.min, summary.median, summary.p90, summary.max) == (70, 70, 90, 470)
    assert summary.samples == 100
    assert summary.overhead == 30


def test_histogram_bins_cover_up_to_p99_and_count_the_rest() -> None:
    counts = {value: 1 for value in range(1000)}
    counts[10**6] = 5  # a far outlier
    summary = summarize(counts, overhead=0)
    histogram = summary.histogram
    assert histogram["start"] == 0
    assert len(histogram["counts"]) <= HISTOGRAM_BINS
    assert sum(histogram["counts"]) + histogram["above"] == summary.samples
    assert histogram["above"] >= 5


def test_batched_samples_are_divided_after_the_overhead() -> None:
    # each sample timed 8 calls plus one stamp pair (40 ticks): 8 * 100 + 40 and 8 * 110 + 40
    summary = summarize({840: 3, 920: 1}, overhead=40, per=8)
    assert (summary.min, summary.median, summary.max) == (100, 100, 110)
    assert summary.overhead == 40, "the stamp pair is subtracted whole, once per sample"
    assert summary.histogram["start"] == 100
