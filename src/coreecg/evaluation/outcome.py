"""What a transfer run (probe or fine-tune) chose on validation and what it scored, in one shape for both."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coreecg.evaluation.selection import Selection
from coreecg.metrics import score


@dataclass
class Outcome:
    """Per-record probabilities on validation (and test, scored once), thresholds tuned on validation,
    and the choices made on validation (C, best step, ...)."""

    val_probabilities: np.ndarray
    test_probabilities: np.ndarray | None
    thresholds: np.ndarray
    chosen: dict = field(default_factory=dict)
    seconds: float = 0.0


def summarize(selection: Selection, outcome: Outcome, replicates: int = 1000) -> dict:
    """Selection sizes, the choices, and every metric with bootstrap CIs on validation (and test)."""

    def scored(labels: np.ndarray, probabilities: np.ndarray) -> dict:
        return score(labels, probabilities, outcome.thresholds, selection.train.classes, replicates).to_dict()

    summary = {
        **selection.describe(),
        "chosen": outcome.chosen,
        "seconds": round(outcome.seconds, 1),
        "val": scored(selection.val.labels, outcome.val_probabilities),
    }
    if selection.test is not None and outcome.test_probabilities is not None:
        summary["test"] = scored(selection.test.labels, outcome.test_probabilities)
    return summary
