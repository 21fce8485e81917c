"""Counts of observations in fixed buckets: a histogram without a metrics library.

The writer thread and the replay code record durations and batch sizes here at the cost of
a few integer additions; ``/metrics`` reads them at scrape time and publishes them as
Prometheus histograms. Keeping this in the store (not prometheus-client objects) keeps the
lower layers free of the API's dependencies and lets any number of apps read the same
stats.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

# Seconds: from a fast fsync (sub-millisecond on NVMe) to a stalled disk.
SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
# Sizes (requests per group commit, events per batch).
SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


@dataclass(slots=True)
class Distribution:
    """Observations counted per bucket (upper bounds ``bounds``, plus +Inf) and summed.

    Single writer (one thread records), any readers: a reader may see the sum one
    observation behind the counts, which a scrape tolerates.
    """

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations ≤ it)`` pairs ending with ``(inf, count)``."""
        running = 0
        pairs: list[tuple[float, int]] = []
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            running += n
            pairs.append((bound, running))
        return pairs


def seconds() -> Distribution:
    return Distribution(SECONDS_BUCKETS)


def sizes(bounds: Sequence[float] = SIZE_BUCKETS) -> Distribution:
    return Distribution(tuple(bounds))
