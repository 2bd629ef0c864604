"""Multilabel iterative stratification (Sechidis, Tsoumakas & Vlahavas, ECML-PKDD 2011).

Random subsets of a multi-label training set can miss rare classes entirely at 1 %; iterative
stratification hands out the records of the rarest remaining label first, each to the part that
still wants most of that label, so every part keeps close to its share of every class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iterative_stratification(labels: np.ndarray, proportions: Sequence[float], seed: int) -> np.ndarray:
    """Part index (0..len(proportions)-1) of every row of a rows × classes 0/1 matrix."""
    labels = np.asarray(labels, dtype=bool)
    proportions = np.asarray(proportions, dtype=np.float64)
    if (proportions < 0).any() or not np.isclose(proportions.sum(), 1.0):
        raise ValueError(f"proportions must be non-negative and sum to 1, got {proportions.tolist()}")
    rng = np.random.default_rng(seed)
    n, n_classes = labels.shape
    wanted_rows = proportions * n
    wanted_per_class = proportions[:, None] * labels.sum(0)[None, :]  # parts × classes
    part = np.full(n, -1, dtype=np.int64)
    remaining = labels.copy()
    order_noise = rng.random(n_classes)

    def assign(row: int, preference: np.ndarray) -> None:
        best = np.flatnonzero(preference == preference.max())
        if len(best) > 1:
            rows_wanted = wanted_rows[best]
            best = best[rows_wanted == rows_wanted.max()]
        choice = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
        part[row] = choice
        wanted_rows[choice] -= 1
        wanted_per_class[choice] -= labels[row]
        remaining[row] = False

    while True:
        counts = remaining.sum(0)
        if not counts.any():
            break
        candidates = np.flatnonzero(counts > 0)
        fewest = candidates[counts[candidates] == counts[candidates].min()]
        label = int(fewest[np.argmin(order_noise[fewest])])  # ties between equally rare labels: seeded
        rows = np.flatnonzero(remaining[:, label])
        for row in rng.permutation(rows):
            assign(int(row), wanted_per_class[:, label])
    for row in rng.permutation(np.flatnonzero(part < 0)):  # rows without any label
        assign(int(row), wanted_rows.copy())
    return part


def label_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices of a stratified ``fraction`` of the rows (all rows at 1.0; at least one row)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    n = len(labels)
    if fraction >= 1.0:
        return np.arange(n)
    part = iterative_stratification(labels, [fraction, 1.0 - fraction], seed)
    chosen = np.flatnonzero(part == 0)
    return chosen if len(chosen) else np.array([int(np.random.default_rng(seed).integers(n))])
