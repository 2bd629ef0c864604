"""Linear probe: standardized frozen embeddings, one-vs-rest L2 logistic regression (Newton), C chosen on validation.

One C is shared by all classes and chosen by validation macro AUROC (a per-class C would overfit
the validation fold on rare classes). Thresholds for F1 are then tuned on the same validation
predictions. Nothing here ever sees test labels: ``fit_probe`` takes train and validation only,
and the caller scores the test part once with the chosen model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from coreecg.evaluation.outcome import Outcome
from coreecg.evaluation.selection import Selection
from coreecg.metrics import macro_auroc, tune_thresholds

# Half-decade steps, 1e-4 … 1000. The upper end matters: on PTB-XL 100 % labels sub_class and form
# peak at C ≈ 100 (a grid ending at 10 cost form 0.0045 AUROC); 1 % fractions want C ≈ 0.03.
DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 3, 15))


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


def _objective(z1: torch.Tensor, y: torch.Tensor, w: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """Per class: summed log loss plus the L2 term on the weights (not the intercept); w is classes × (D + 1)."""
    logits = z1 @ w.T
    return (F.softplus(logits) - y * logits).sum(0) + 0.5 * ((w * w) @ penalty)


def _solve_positive_definite(matrices: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``matrices[i]⁻¹ right[i]`` for a batch of symmetric positive definite matrices, by Cholesky.

    Not ``torch.linalg.solve``: its batched LU in torch's CPU build (MKL) hangs, after
    ``torch.set_num_threads``, on a few matrices of 193 rows or more (measured with torch 2.13; a probe
    on g+time features of the cpu preset is 385). A Hessian whose probabilities have saturated can
    be positive definite in exact arithmetic and fail the factorization in floating point: those get
    a ridge of 1e-6 of their mean diagonal.
    """
    factor, info = torch.linalg.cholesky_ex(matrices)
    failed = info != 0
    if failed.any():
        bad = matrices[failed]
        jitter = 1e-6 * bad.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
        factor[failed] = torch.linalg.cholesky(bad + jitter * torch.eye(bad.shape[-1], dtype=bad.dtype))
    return torch.cholesky_solve(right[..., None], factor)[..., 0]


def fit_logistic(
    z: np.ndarray, y: np.ndarray, c: float, start: np.ndarray | None = None, tol: float = 1e-8, max_iter: int = 100
) -> np.ndarray:
    """One-vs-rest L2 logistic regression, every class at once, by damped Newton; returns classes × (D + 1).

    The objective is scikit-learn's (C times the summed log loss plus half the squared weights,
    intercept unpenalized), so the optimum is the same; Newton reaches it in a handful of steps
    where L-BFGS needed hundreds and often stopped short. A class stops when its Newton decrement
    falls below ``tol`` times the record count. The algebra runs in torch (float64): NumPy's
    OpenBLAS threads contend with torch's own and made small probes a hundred times slower.
    """
    n, d = z.shape
    z1 = torch.cat([torch.as_tensor(z, dtype=torch.float64), torch.ones(n, 1, dtype=torch.float64)], 1)
    y_all = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    penalty = torch.cat([torch.full((d,), 1.0 / c, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    ridge = torch.diag(penalty + 1e-10)
    w = torch.zeros(y_all.shape[1], d + 1, dtype=torch.float64) if start is None else torch.tensor(start)
    active = torch.ones(y_all.shape[1], dtype=torch.bool)
    for _ in range(max_iter):
        k = torch.nonzero(active).flatten()
        if len(k) == 0:
            break
        y_k, w_k = y_all[:, k], w[k]
        p = torch.sigmoid(z1 @ w_k.T)
        grad = z1.T @ (p - y_k) + (w_k * penalty).T  # (D + 1) × active
        curvature = p * (1 - p)
        hessians = torch.stack([(z1 * curvature[:, i, None]).T @ z1 for i in range(len(k))]) + ridge
        steps = _solve_positive_definite(hessians, grad.T)  # active × (D + 1)
        decrement = (grad.T * steps).sum(1)  # squared Newton decrement, ≥ 0
        current = _objective(z1, y_k, w_k, penalty)
        scale = torch.ones(len(k), dtype=torch.float64)
        for _ in range(30):  # backtracking (Armijo) per class
            worse = _objective(z1, y_k, w_k - scale[:, None] * steps, penalty) > current - 0.25 * scale * decrement
            if not worse.any():
                break
            scale[worse] *= 0.5
        w[k] = w_k - scale[:, None] * steps
        active[k[decrement / 2 <= tol * n]] = False
    return w.numpy()


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    classes: list[str],
    cs: tuple[float, ...] = DEFAULT_CS,
) -> ProbeFit:
    """Fit one probe per C (small to large, warm-started), keep the one with the best validation macro AUROC."""
    if not cs:
        raise ValueError("the C grid is empty")
    mean = train_x.mean(0, dtype=np.float64)
    std = train_x.std(0, dtype=np.float64) + 1e-6
    z = (train_x - mean) / std
    train_y = np.asarray(train_y)
    positives = train_y.mean(0)
    constant = (positives == 0) | (positives == 1)
    prior = np.clip(positives, 1e-6, 1 - 1e-6)
    stacked = np.zeros((train_y.shape[1], z.shape[1] + 1))
    stacked[constant, -1] = np.log(prior / (1 - prior))[constant]  # a class with one label value: its prior
    best: tuple[float, float, np.ndarray] | None = None
    val_auroc_by_c = {}
    for c in sorted(cs):  # small to large C, each warm-started from the last
        stacked = stacked.copy()
        if not constant.all():
            stacked[~constant] = fit_logistic(z, train_y[:, ~constant], c, start=stacked[~constant])
        probe = LinearProbe(mean, std, stacked[:, :-1], stacked[:, -1], classes, c)
        value = macro_auroc(val_y, probe.scores(val_x), classes).value
        val_auroc_by_c[c] = value
        value = -math.inf if math.isnan(value) else value
        if best is None or value > best[0]:  # ties keep the smaller C (stronger regularization)
            best = (value, c, stacked)
    _, c, stacked = best
    probe = LinearProbe(mean, std, stacked[:, :-1], stacked[:, -1], classes, c)
    probe.thresholds = tune_thresholds(val_y, probe.scores(val_x))
    return ProbeFit(probe, val_auroc_by_c, [name for name, flag in zip(classes, constant, strict=True) if flag])


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
    chosen = {
        "c": probe.c,
        "val_auroc_by_c": {f"{c:g}": v for c, v in fit.val_auroc_by_c.items()},
        "constant_classes": fit.constant_classes,
    }
    return Outcome(val_p, test_p, probe.thresholds, chosen, time.perf_counter() - start)
