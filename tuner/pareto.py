"""Multi-objective searches: the Pareto front of the trials and its knee point.

Plain functions of a points array, shared by the search's summary (`tuner.search`) and the
report (`analysis.report`), so both name the same trials.
"""
from __future__ import annotations

import numpy as np


def pareto_front(points, modes) -> np.ndarray:
    """Mask of the non-dominated rows of `points` (n, k): no other row is at least as good in every
    objective and better in one. modes: "max" or "min" per objective. Values equal to 12 decimals
    tie: means of per-class rates carry float noise (0.8 as 0.8000000000000002 or 0.7999999999999999)."""
    p = np.round(np.asarray(points, dtype=float), 12) * np.where(np.asarray(modes) == "max", 1.0, -1.0)
    at_least = (p[:, None, :] >= p[None, :, :]).all(2)  # [i, j]: i is at least as good as j everywhere
    better = (p[:, None, :] > p[None, :, :]).any(2)
    return ~(at_least & better).any(0)


def knee_point(front, modes) -> int:
    """Index of the front point closest (Euclidean) to the ideal point, best in every objective,
    after scaling each objective to [0, 1] over the front (an objective all points share counts as ideal)."""
    p = np.asarray(front, dtype=float) * np.where(np.asarray(modes) == "max", 1.0, -1.0)
    lo, span = p.min(0), p.max(0) - p.min(0)
    scaled = np.where(span > 0, (p - lo) / np.where(span > 0, span, 1.0), 1.0)
    return int(np.argmin(np.linalg.norm(1.0 - scaled, axis=1)))


def front_and_knee(points, modes) -> tuple[np.ndarray, list[int], int]:
    """The front of `points` as the summary and the report show it: (mask of the front rows, their
    row indices best first on the first objective, ties in row order, the knee's row index)."""
    points = np.asarray(points, dtype=float)
    on_front = pareto_front(points, modes)
    sign = -1.0 if modes[0] == "max" else 1.0
    order = sorted(np.flatnonzero(on_front).tolist(), key=lambda i: sign * points[i, 0])  # stable: ties keep row order
    return on_front, order, order[knee_point(points[order], modes)]
