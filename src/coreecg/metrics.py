"""Classification metrics over multi-label score matrices (records × classes), as pure functions.

AUROC and average precision are computed column-wise with NumPy (rank statistics, exact under ties,
checked against scikit-learn in the tests) so that a thousand bootstrap replicates cost seconds.
A class whose labels are all one value has no defined AUROC/AUPRC: it is excluded from the macro
mean and named, never silently scored as 0.5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

DEFAULT_THRESHOLD = 0.5  # used for a class whose validation labels cannot tune one (no positives)


def auroc_columns(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of every column (Mann–Whitney U with average ranks for ties); NaN where undefined."""
    labels = np.asarray(labels, dtype=bool)
    ranks = rankdata(np.asarray(scores, dtype=np.float64), axis=0)
    positives = labels.sum(0)
    negatives = labels.shape[0] - positives
    rank_sum = np.where(labels, ranks, 0.0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _operating_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct score, highest first: the threshold, true positives and records called at ``>=`` it."""
    order = np.argsort(-s, kind="stable")
    s, hit = s[order], y[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # one threshold per distinct score
    return s[last_of_tie], np.cumsum(hit)[last_of_tie], (np.flatnonzero(last_of_tie) + 1).astype(np.float64)


def average_precision_columns(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision (area under the step precision–recall curve, as scikit-learn) per column."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(labels.shape[1], np.nan)
    for j in range(labels.shape[1]):
        n_pos = int(labels[:, j].sum())
        if n_pos == 0 or n_pos == len(labels):
            continue
        _, tp, called = _operating_points(labels[:, j], scores[:, j])
        out[j] = float(np.sum(np.diff(np.r_[0, tp]) / n_pos * tp / called))
    return out


def f1_columns(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F1 per column when a record is called positive at ``score >= threshold``; NaN without positives."""
    labels = np.asarray(labels, dtype=bool)
    called = np.asarray(scores) >= np.asarray(thresholds)[None, :]
    tp = (called & labels).sum(0)
    denominator = called.sum(0) + labels.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2.0 * tp / denominator
    return np.where(labels.sum(0) > 0, f1, np.nan)


def tune_thresholds(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per class, the score threshold that maximizes F1 on these (validation) labels.

    Classes without positives keep ``DEFAULT_THRESHOLD``. Ties in F1 go to the highest threshold.
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.full(labels.shape[1], DEFAULT_THRESHOLD)
    for j in range(labels.shape[1]):
        n_pos = int(labels[:, j].sum())
        if n_pos == 0:
            continue
        cuts, tp, called = _operating_points(labels[:, j], scores[:, j])
        thresholds[j] = cuts[int(np.argmax(2.0 * tp / (called + n_pos)))]
    return thresholds


def _macro(values: np.ndarray):
    """Mean over classes (the last axis) of the defined values; NaN where none is defined.

    A float for one row of classes, an array for a stack of rows (bootstrap resamples).
    """
    defined = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(defined, values, 0.0).sum(-1) / defined.sum(-1)
    return float(means) if np.ndim(means) == 0 else means


@dataclass(frozen=True)
class MacroAUROC:
    value: float  # mean over classes that have both positives and negatives; NaN if none has
    per_class: dict[str, float]
    excluded: list[str]  # classes without positives (or without negatives) in these labels


def macro_auroc(labels: np.ndarray, scores: np.ndarray, classes: Sequence[str] | None = None) -> MacroAUROC:
    """Macro AUROC; classes where AUROC is undefined are excluded and named, never silently scored."""
    labels = np.asarray(labels)
    classes = list(classes or [str(i) for i in range(labels.shape[1])])
    auc = auroc_columns(labels, scores)
    per_class = {name: float(a) for name, a in zip(classes, auc, strict=True) if not np.isnan(a)}
    excluded = [name for name, a in zip(classes, auc, strict=True) if np.isnan(a)]
    return MacroAUROC(_macro(auc), per_class, excluded)


MACRO_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "auroc": lambda y, s, t: auroc_columns(y, s),
    "auprc": lambda y, s, t: average_precision_columns(y, s),
    "f1": f1_columns,
}


class _SortedColumn:
    """One score column sorted once, with its tie groups, so any resample is scored from record counts."""

    def __init__(self, y: np.ndarray, s: np.ndarray):
        order = np.argsort(s, kind="stable")
        sorted_scores = s[order]
        self.order, self.y = order, y[order].astype(np.float64)
        self.starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # tie groups, ascending

    def metrics(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """AUROC and average precision of each resample (a row of ``counts``: how often each record was drawn)."""
        weights = counts[:, self.order]
        pos = np.add.reduceat(weights * self.y, self.starts, axis=1)  # resamples × groups
        neg = np.add.reduceat(weights * (1.0 - self.y), self.starts, axis=1)
        n_pos, n_neg = pos.sum(1), neg.sum(1)
        below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each group
        with np.errstate(invalid="ignore", divide="ignore"):
            auroc = (pos * (below + 0.5 * neg)).sum(1) / (n_pos * n_neg)
            tp = np.cumsum(pos[:, ::-1], axis=1)  # records at or above each threshold, highest first
            called = np.cumsum((pos + neg)[:, ::-1], axis=1)
            precision = np.where(pos[:, ::-1] > 0, tp / np.maximum(called, 1e-300), 0.0)
            ap = (pos[:, ::-1] * precision).sum(1) / n_pos
        defined = (n_pos > 0) & (n_neg > 0)
        return np.where(defined, auroc, np.nan), np.where(defined, ap, np.nan)


def _bootstrap_draws(
    labels: np.ndarray,
    groups: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    replicates: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Each macro metric of each group (score sets, threshold sets), averaged over its sets, per resample.

    Returns, per metric, an array groups × kept resamples: every group is scored on the same resamples
    (paired), and a resample where any group's metric is undefined for every class is skipped. A
    resample is scored from how often it drew each record, against columns sorted once (exactly the
    metrics of the materialized resample, ties included).
    """
    labels = np.asarray(labels, dtype=bool)
    rng = np.random.default_rng(seed)
    n, k = labels.shape
    prepared = []
    for score_sets, threshold_sets in groups:
        columns = [
            [_SortedColumn(labels[:, j], np.asarray(s, dtype=np.float64)[:, j]) for j in range(k)] for s in score_sets
        ]
        called = [np.asarray(s) >= np.asarray(t)[None, :] for s, t in zip(score_sets, threshold_sets, strict=True)]
        prepared.append((columns, called))
    draws: dict[str, list[np.ndarray]] = {name: [] for name in MACRO_METRICS}
    chunk = max(1, 2_000_000 // max(n, 1))  # resamples scored together (bounded memory)
    for first in range(0, replicates, chunk):
        counts = np.stack(
            [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(min(chunk, replicates - first))]
        ).astype(np.float64)
        positives = counts @ labels
        per_group: dict[str, list[np.ndarray]] = {name: [] for name in MACRO_METRICS}
        for columns, called in prepared:
            per_set: dict[str, list[np.ndarray]] = {name: [] for name in MACRO_METRICS}
            for set_columns, set_called in zip(columns, called, strict=True):
                pairs = [column.metrics(counts) for column in set_columns]
                per_set["auroc"].append(_macro(np.stack([a for a, _ in pairs], 1)))
                per_set["auprc"].append(_macro(np.stack([p for _, p in pairs], 1)))
                tp, calls = counts @ (set_called & labels), counts @ set_called
                with np.errstate(invalid="ignore", divide="ignore"):
                    f1 = np.where(positives > 0, 2.0 * tp / (calls + positives), np.nan)
                per_set["f1"].append(_macro(f1))
            for name, values in per_set.items():
                per_group[name].append(np.stack(values))  # sets × resamples
        for name, values in per_group.items():
            keep = ~np.any([np.isnan(v).any(0) for v in values], axis=0)
            draws[name].append(np.stack([v[:, keep].mean(0) for v in values]))
    return {name: np.concatenate(chunks, axis=1) for name, chunks in draws.items()}


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    if not len(values):
        return (np.nan, np.nan)
    return (float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail)))


def bootstrap_intervals(
    labels: np.ndarray,
    score_sets: Sequence[np.ndarray],
    threshold_sets: Sequence[np.ndarray],
    replicates: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile CIs of each macro metric, averaged over ``score_sets`` (e.g. seeds) on the same records.

    Records are resampled with replacement; every replicate scores all sets on the same resample,
    so the interval is that of the seed-averaged metric. Replicates where a metric is undefined
    for every class are skipped. Scored from record counts (``_bootstrap_draws``), a thousand
    replicates of 2,146 records × 23 classes × 3 seeds take 14 s instead of 49 s.
    """
    draws = _bootstrap_draws(labels, [(score_sets, threshold_sets)], replicates, seed)
    return {name: _percentiles(values[0], level) for name, values in draws.items()}


@dataclass(frozen=True)
class PairedDifference:
    """Metric of A minus metric of B on the same records: the point value and its paired bootstrap."""

    a: float
    b: float
    difference: float
    ci95: tuple[float, float]
    share_not_above: float  # share of resamples where A − B ≤ 0: small means A is above B beyond chance


def paired_bootstrap_difference(
    labels: np.ndarray,
    a: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    b: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    replicates: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, PairedDifference]:
    """A − B for each macro metric, each side averaged over its (score sets, threshold sets), e.g. seeds.

    Both models are scored on the same resamples of the same records, so what the records have in
    common (a hard case is hard for both) cancels: the interval of the difference is far narrower
    than two separate CIs suggest, and it is the right test of "does A beat B on these records".
    """
    labels = np.asarray(labels, dtype=bool)
    point = {}
    for name, metric in MACRO_METRICS.items():
        sides = [[_macro(metric(labels, s, t)) for s, t in zip(*side, strict=True)] for side in (a, b)]
        point[name] = (float(np.mean(sides[0])), float(np.mean(sides[1])))
    draws = _bootstrap_draws(labels, [a, b], replicates, seed)
    out = {}
    for name, values in draws.items():
        delta = values[0] - values[1]
        share = float(np.mean(delta <= 0)) if len(delta) else np.nan
        va, vb = point[name]
        out[name] = PairedDifference(va, vb, va - vb, _percentiles(delta, level), share)
    return out


@dataclass
class Scores:
    """Every metric of one model on one split: macro values, per-class values, exclusions."""

    auroc: float
    auprc: float
    f1: float
    per_class: dict[str, dict[str, float]]
    excluded: list[str]
    positives: dict[str, int]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "auroc": self.auroc,
            "auprc": self.auprc,
            "f1": self.f1,
            "ci95": {k: list(v) for k, v in self.ci.items()},
            "excluded": self.excluded,
            "positives": self.positives,
            "per_class": self.per_class,
        }


def score(
    labels: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    classes: Sequence[str],
    replicates: int = 1000,
    seed: int = 0,
) -> Scores:
    """Macro AUROC, AUPRC and F1 (at the given, validation-tuned thresholds) with bootstrap 95 % CIs."""
    labels = np.asarray(labels, dtype=bool)
    columns = {name: metric(labels, scores, thresholds) for name, metric in MACRO_METRICS.items()}
    auc = columns["auroc"]
    per_class = {
        name: {metric: float(values[j]) for metric, values in columns.items()} | {"threshold": float(thresholds[j])}
        for j, name in enumerate(classes)
    }
    ci = bootstrap_intervals(labels, [scores], [thresholds], replicates, seed) if replicates else {}
    return Scores(
        auroc=_macro(auc),
        auprc=_macro(columns["auprc"]),
        f1=_macro(columns["f1"]),
        per_class=per_class,
        excluded=[name for name, a in zip(classes, auc, strict=True) if np.isnan(a)],
        positives={name: int(count) for name, count in zip(classes, labels.sum(0), strict=True)},
        ci=ci,
    )
