"""Classification metrics over multi-label score matrices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class MacroAUROC:
    value: float  # mean over classes that have both positives and negatives; NaN if none has
    per_class: dict[str, float]
    excluded: list[str]  # classes without positives (or without negatives) in these labels


def macro_auroc(labels: np.ndarray, scores: np.ndarray, classes: list[str] | None = None) -> MacroAUROC:
    """Macro AUROC; classes where AUROC is undefined are excluded and named, never silently scored."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    classes = classes or [str(i) for i in range(labels.shape[1])]
    per_class, excluded = {}, []
    for j, name in enumerate(classes):
        column = labels[:, j]
        if column.min() == column.max():
            excluded.append(name)
            continue
        per_class[name] = float(roc_auc_score(column, scores[:, j]))
    value = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return MacroAUROC(value, per_class, excluded)
