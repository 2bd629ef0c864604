"""Which records of a store train, select and test a model: parts by split name or fold list.

A part is written as a split name from the store (``train``, ``val``, ``test``) or as folds
(``1-8``, ``9``, ``1,3,5``, or a YAML list of integers). Only records labelled for the task are
used; the three parts must not share a record, so selection can never see test records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from coreecg.evaluation.stratify import label_fraction
from coreecg.store import Store, StoreError

_FOLDS = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")


@dataclass(frozen=True)
class Part:
    """A split name or a set of folds."""

    split: str | None = None
    folds: tuple[int, ...] | None = None

    def __str__(self) -> str:
        return self.split if self.split is not None else "folds " + ",".join(map(str, self.folds or ()))


def parse_part(spec: str | int | list | tuple | Part) -> Part:
    """``"val"`` → split val; ``"1-8"``, ``"9"``, ``9`` or ``[1, 2]`` → those folds."""
    if isinstance(spec, Part):
        return spec
    if isinstance(spec, int):
        return Part(folds=(spec,))
    if isinstance(spec, (list, tuple)):
        if not spec or not all(isinstance(f, int) for f in spec):
            raise ValueError(f"a fold list must be non-empty integers, got {spec!r}")
        return Part(folds=tuple(sorted(set(spec))))
    text = str(spec).strip()
    if not text:
        raise ValueError("an empty part: give a split name (train, val, test) or folds (1-8)")
    if _FOLDS.match(text):
        folds: set[int] = set()
        for piece in text.split(","):
            low, _, high = piece.partition("-")
            folds.update(range(int(low), int(high or low) + 1))
        return Part(folds=tuple(sorted(folds)))
    return Part(split=text)


def part_mask(store: Store, part: Part) -> np.ndarray:
    """Records of the store in this part (a boolean mask over record rows)."""
    if part.split is not None:
        mask = store.split == part.split
        if not mask.any():
            present = ", ".join(sorted(set(store.split) - {""})) or "none"
            raise StoreError(f"{store.path}: no record has split {part.split!r} (splits in this store: {present})")
        return mask
    mask = np.isin(store.fold, list(part.folds or ()))
    if not mask.any():
        present = ", ".join(map(str, sorted(set(store.fold.tolist()) - {-1}))) or "none"
        raise StoreError(f"{store.path}: no record is in {part} (folds in this store: {present})")
    return mask


@dataclass
class TaskRecords:
    """Labelled record rows of one part for one label set, with their label rows."""

    rows: np.ndarray
    labels: np.ndarray  # rows × classes, 0/1
    classes: list[str]


@dataclass
class Selection:
    """The train (possibly a label fraction), validation and optional test records of a task."""

    task: str
    train: TaskRecords
    val: TaskRecords
    test: TaskRecords | None
    fraction: float
    seed: int

    def describe(self) -> dict:
        return {
            "task": self.task,
            "fraction": self.fraction,
            "seed": self.seed,
            "train_records": len(self.train.rows),
            "val_records": len(self.val.rows),
            "test_records": None if self.test is None else len(self.test.rows),
        }


def select(
    store: Store,
    task: str,
    train: str | Part = "train",
    val: str | Part = "val",
    test: str | Part | None = None,
    fraction: float = 1.0,
    seed: int = 0,
) -> Selection:
    """Labelled records of each part; the train part reduced to a stratified ``fraction`` by ``seed``."""
    labels = store.label_set(task)
    parts = {"train": parse_part(train), "val": parse_part(val)}
    if test is not None:
        parts["test"] = parse_part(test)
    masks = {name: part_mask(store, part) for name, part in parts.items()}
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = int((masks[a] & masks[b]).sum())
            if shared:
                raise ValueError(f"the {a} part ({parts[a]}) and the {b} part ({parts[b]}) share {shared} records")
    chosen: dict[str, TaskRecords] = {}
    for name, mask in masks.items():
        rows = np.flatnonzero(mask & labels.labelled)
        if len(rows) == 0:
            raise StoreError(f"{store.path}: no record of the {name} part ({parts[name]}) is labelled for {task!r}")
        chosen[name] = TaskRecords(rows, labels.matrix[rows].astype(np.int8), list(labels.classes))
    full = chosen["train"]
    keep = label_fraction(full.labels, fraction, seed)
    chosen["train"] = TaskRecords(full.rows[keep], full.labels[keep], full.classes)
    return Selection(task, chosen["train"], chosen["val"], chosen.get("test"), fraction, seed)
