"""Linear probe: standardized frozen embeddings, one-vs-rest L2 logistic regression, C chosen on validation.

One C is shared by all classes and chosen by validation macro AUROC (a per-class C would overfit
the validation fold on rare classes). Thresholds for F1 are then tuned on the same validation
predictions. Nothing here ever sees test labels: ``fit_probe`` takes train and validation only,
and the caller scores the test part once with the chosen model.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from coreecg.evaluation.outcome import Outcome
from coreecg.evaluation.selection import Selection
from coreecg.metrics import macro_auroc, tune_thresholds

DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 1, 11))  # half-decade steps, 1e-4 … 10


@dataclass
class LinearProbe:
    """Standardization plus a weight matrix: scores = sigmoid(((x - mean) / std) @ coef.T + intercept)."""

    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray  # classes × D
    intercept: np.ndarray  # classes
    classes: list[str]
    c: float
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def scores(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, dtype=np.float64) - self.mean) / self.std) @ self.coef.T + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


@dataclass
class ProbeFit:
    probe: LinearProbe
    val_auroc_by_c: dict[float, float]
    constant_classes: list[str]  # no positives (or no negatives) in the training labels: scored by prior


def _fit_column(z: np.ndarray, y: np.ndarray, c: float, max_iter: int, warm: np.ndarray | None) -> np.ndarray:
    """Weights and intercept (D + 1) of one class; a class with one label value gets its prior's logit."""
    positives = y.mean()
    if positives in (0.0, 1.0):
        prior = np.clip(positives, 1e-6, 1 - 1e-6)
        return np.r_[np.zeros(z.shape[1]), np.log(prior / (1 - prior))]
    model = LogisticRegression(C=c, max_iter=max_iter, warm_start=warm is not None, tol=1e-4)
    if warm is not None:
        model.coef_, model.intercept_ = warm[None, :-1].copy(), warm[-1:].copy()
        model.classes_ = np.array([0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(z, y)
    return np.r_[model.coef_[0], model.intercept_[0]]


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    classes: list[str],
    cs: tuple[float, ...] = DEFAULT_CS,
    max_iter: int = 1000,
) -> ProbeFit:
    """Fit one probe per C (small to large, warm-started), keep the one with the best validation macro AUROC."""
    if not cs:
        raise ValueError("the C grid is empty")
    mean = train_x.mean(0, dtype=np.float64)
    std = train_x.std(0, dtype=np.float64) + 1e-6
    z = (train_x - mean) / std
    train_y = np.asarray(train_y)
    n_classes = train_y.shape[1]
    weights = [None] * n_classes
    best: tuple[float, float, np.ndarray] | None = None
    val_auroc_by_c = {}
    for c in sorted(cs):
        weights = [_fit_column(z, train_y[:, j], c, max_iter, weights[j]) for j in range(n_classes)]
        stacked = np.stack(weights)
        probe = LinearProbe(mean, std, stacked[:, :-1], stacked[:, -1], classes, c)
        value = macro_auroc(val_y, probe.scores(val_x), classes).value
        val_auroc_by_c[c] = value
        value = -math.inf if math.isnan(value) else value
        if best is None or value > best[0]:  # ties keep the smaller C (stronger regularization)
            best = (value, c, stacked)
    _, c, stacked = best
    probe = LinearProbe(mean, std, stacked[:, :-1], stacked[:, -1], classes, c)
    probe.thresholds = tune_thresholds(val_y, probe.scores(val_x))
    constant = [name for j, name in enumerate(classes) if train_y[:, j].min() == train_y[:, j].max()]
    return ProbeFit(probe, val_auroc_by_c, constant)


def probe_selection(
    embed: Callable[[np.ndarray], np.ndarray], selection: Selection, cs: tuple[float, ...] = DEFAULT_CS
) -> Outcome:
    """Fit on train, choose C and thresholds on validation, then score test once; ``embed(rows)`` gives features."""
    start = time.perf_counter()
    classes = selection.train.classes
    train_x, val_x = embed(selection.train.rows), embed(selection.val.rows)
    fit = fit_probe(train_x, selection.train.labels, val_x, selection.val.labels, classes, cs)
    probe = fit.probe
    val_p = probe.scores(val_x)
    test_p = None if selection.test is None else probe.scores(embed(selection.test.rows))
    chosen = {"c": probe.c, "val_auroc_by_c": {f"{c:g}": v for c, v in fit.val_auroc_by_c.items()},
              "constant_classes": fit.constant_classes}  # fmt: skip
    return Outcome(val_p, test_p, probe.thresholds, chosen, time.perf_counter() - start)
