"""Metrics against scikit-learn, threshold tuning against brute force, iterative stratification on real labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from coreecg.evaluation.stratify import iterative_stratification, label_fraction
from coreecg.metrics import (
    auroc_columns,
    average_precision_columns,
    bootstrap_intervals,
    f1_columns,
    macro_auroc,
    paired_bootstrap_difference,
    score,
    tune_thresholds,
)
from coreecg.store import Store
from tests.conftest import needs_sample


def _labels_and_scores(seed: int, n: int = 300, classes: int = 6, ties: bool = True):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, classes)) < np.linspace(0.05, 0.5, classes)).astype(int)
    scores = labels * rng.normal(0.8, 1.0, (n, classes)) + rng.normal(0, 1.0, (n, classes))
    if ties:
        scores = np.round(scores, 1)  # many tied scores
    return labels, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_average_precision_match_sklearn_with_ties(seed):
    labels, scores = _labels_and_scores(seed)
    auc = auroc_columns(labels, scores)
    ap = average_precision_columns(labels, scores)
    for j in range(labels.shape[1]):
        assert auc[j] == pytest.approx(roc_auc_score(labels[:, j], scores[:, j]), abs=1e-12)
        assert ap[j] == pytest.approx(average_precision_score(labels[:, j], scores[:, j]), abs=1e-12)


def test_classes_without_positives_are_excluded_and_named():
    labels, scores = _labels_and_scores(0)
    labels[:, 2] = 0
    labels[:, 4] = 1
    result = macro_auroc(labels, scores, [f"c{j}" for j in range(6)])
    assert result.excluded == ["c2", "c4"]
    expected = np.mean([roc_auc_score(labels[:, j], scores[:, j]) for j in (0, 1, 3, 5)])
    assert result.value == pytest.approx(expected)
    assert set(result.per_class) == {"c0", "c1", "c3", "c5"}


def test_tuned_thresholds_reach_the_best_f1_and_f1_matches_sklearn():
    labels, scores = _labels_and_scores(3)
    thresholds = tune_thresholds(labels, scores)
    f1 = f1_columns(labels, scores, thresholds)
    for j in range(labels.shape[1]):
        brute = max(f1_score(labels[:, j], scores[:, j] >= t) for t in np.unique(scores[:, j]))
        assert f1[j] == pytest.approx(brute)
        assert f1[j] == pytest.approx(f1_score(labels[:, j], scores[:, j] >= thresholds[j]))


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_more_records():
    small_y, small_s = _labels_and_scores(4, n=150, ties=False)
    large_y, large_s = _labels_and_scores(4, n=2400, ties=False)
    t = np.full(6, 0.5)
    small = bootstrap_intervals(small_y, [small_s], [t], replicates=300, seed=0)
    large = bootstrap_intervals(large_y, [large_s], [t], replicates=300, seed=0)
    point = macro_auroc(small_y, small_s).value
    assert small["auroc"][0] < point < small["auroc"][1]
    assert large["auroc"][1] - large["auroc"][0] < 0.5 * (small["auroc"][1] - small["auroc"][0])
    assert bootstrap_intervals(small_y, [small_s], [t], replicates=300, seed=0) == small  # seeded


def test_paired_difference_equals_differences_of_materialized_resamples():
    labels, scores = _labels_and_scores(5, n=150, ties=True)
    other = np.round(scores + np.random.default_rng(9).normal(0, 0.7, scores.shape), 1)
    t = [np.full(labels.shape[1], 0.5)]
    fast = paired_bootstrap_difference(labels, ([scores], t), ([other], t), replicates=200, seed=4)["auroc"]
    rng = np.random.default_rng(4)
    plain = []
    for _ in range(200):  # the same draws, scored the plain way, A and B on each resample
        rows = rng.integers(0, len(labels), len(labels))
        plain.append(
            np.nanmean(auroc_columns(labels[rows], scores[rows])) - np.nanmean(auroc_columns(labels[rows], other[rows]))
        )
    assert fast.ci95 == pytest.approx((np.percentile(plain, 2.5), np.percentile(plain, 97.5)), abs=1e-12)
    assert fast.share_not_above == pytest.approx(np.mean(np.array(plain) <= 0))
    assert fast.difference == pytest.approx(macro_auroc(labels, scores).value - macro_auroc(labels, other).value)


def test_a_paired_difference_is_resolved_where_two_separate_intervals_overlap():
    # Both models share each record's difficulty; A adds a little signal. The separate CIs overlap,
    # the paired one sees the gap: that is what the comparison of two methods on one fold needs.
    rng = np.random.default_rng(0)
    labels = (rng.random((600, 3)) < 0.3).astype(int)
    difficulty = labels * 0.8 + rng.normal(0, 1.0, labels.shape)
    b = difficulty + rng.normal(0, 0.2, labels.shape)
    a = difficulty + 0.15 * labels + rng.normal(0, 0.2, labels.shape)
    t = [np.full(3, 0.5)]
    ci_a = bootstrap_intervals(labels, [a], t, replicates=300)["auroc"]
    ci_b = bootstrap_intervals(labels, [b], t, replicates=300)["auroc"]
    assert ci_a[0] < ci_b[1]  # overlapping separate intervals
    paired = paired_bootstrap_difference(labels, ([a], t), ([b], t), replicates=300)["auroc"]
    assert paired.ci95[0] > 0 and paired.share_not_above == 0.0
    same = paired_bootstrap_difference(labels, ([a, b], t * 2), ([a, b], t * 2), replicates=50)["auroc"]
    assert same.difference == 0.0 and same.ci95 == (0.0, 0.0) and same.share_not_above == 1.0


def _materialized_bootstrap(labels, score_sets, threshold_sets, replicates, seed):
    """The plain way: build every resample and score it with the column functions (the same draws)."""
    rng = np.random.default_rng(seed)
    draws = {"auroc": [], "auprc": [], "f1": []}
    for _ in range(replicates):
        rows = rng.integers(0, len(labels), len(labels))
        y = labels[rows].astype(bool)
        for name, metric in (
            ("auroc", lambda y, s, t: auroc_columns(y, s)),
            ("auprc", lambda y, s, t: average_precision_columns(y, s)),
            ("f1", f1_columns),
        ):
            values = []
            for s, t in zip(score_sets, threshold_sets, strict=True):
                column = metric(y, s[rows], t)
                values.append(np.nanmean(column) if (~np.isnan(column)).any() else np.nan)
            if not np.isnan(values).any():
                draws[name].append(np.mean(values))
    return {name: (np.percentile(v, 2.5), np.percentile(v, 97.5)) for name, v in draws.items()}


def test_bootstrap_from_counts_equals_scoring_materialized_resamples():
    labels, scores = _labels_and_scores(3, n=120, ties=True)
    labels[:, 0] = 0
    labels[:3, 0] = 1  # a rare class: undefined in many resamples
    other = np.round(scores[::-1] * 4) / 4  # a second "seed" with heavy ties
    thresholds = [np.full(labels.shape[1], 0.5), np.full(labels.shape[1], 0.25)]
    fast = bootstrap_intervals(labels, [scores, other], thresholds, replicates=200, seed=3)
    plain = _materialized_bootstrap(labels, [scores, other], thresholds, 200, 3)
    for name in ("auroc", "auprc", "f1"):
        assert fast[name] == pytest.approx(plain[name], abs=1e-12), name


def test_score_reports_every_metric_per_class():
    labels, scores = _labels_and_scores(5)
    result = score(labels, scores, tune_thresholds(labels, scores), [f"c{j}" for j in range(6)], replicates=50)
    assert set(result.per_class["c0"]) == {"auroc", "auprc", "f1", "threshold"}
    assert result.positives["c5"] == int(labels[:, 5].sum())
    assert result.ci["auprc"][0] <= result.auprc <= result.ci["auprc"][1]


def test_iterative_stratification_keeps_every_class_share_on_real_labels(ptbxl_store):
    labels = Store(str(ptbxl_store)).label_set("subdiagnostic")
    y = labels.matrix[labels.labelled].astype(bool)
    part = iterative_stratification(y, [0.25, 0.75], seed=0)
    counts, chosen = y.sum(0), y[part == 0].sum(0)
    assert abs((part == 0).sum() - 0.25 * len(y)) <= 0.02 * len(y)
    # every class within one record of its share (a random 25 % draw misses by far more on rare classes)
    assert np.all(np.abs(chosen - 0.25 * counts) <= 1.0 + 1e-9), (chosen, 0.25 * counts)
    random_part = np.random.default_rng(0).random(len(y)) < 0.25
    assert np.abs(y[random_part].sum(0) - 0.25 * counts).max() > np.abs(chosen - 0.25 * counts).max()


@needs_sample
def test_label_fraction_is_seeded_nested_in_train_and_covers_rare_classes(ptbxl_store):
    labels = Store(str(ptbxl_store)).label_set("superdiagnostic")
    y = labels.matrix[labels.labelled]
    a, b = label_fraction(y, 0.1, seed=0), label_fraction(y, 0.1, seed=0)
    c = label_fraction(y, 0.1, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(len(a) - 0.1 * len(y)) <= 2
    assert np.all(y[a].sum(0) >= 1)  # every superclass present even at 10 % of ~400 records
    assert np.array_equal(label_fraction(y, 1.0, seed=3), np.arange(len(y)))
    with pytest.raises(ValueError, match="label fraction"):
        label_fraction(y, 0.0, seed=0)
