"""What every reader hands to preprocessing: one ECG record in physical units, plus its metadata.

Readers differ in file formats and label vocabularies; past this point the pipeline sees only
``RawRecord``. A record that cannot be read raises ``RecordError`` naming the file and the problem,
so ``prepare`` can list it as a reject instead of crashing or silently dropping it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Rates a record or a store may have: beyond them a file is damaged, and resampling between them
# would allocate without bound (0.0001 Hz -> 100 Hz is a 10^6-fold upsampling).
RATE_RANGE_HZ = (1.0, 100_000.0)


class RecordError(Exception):
    """A record that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def __reduce__(self):  # picklable across worker processes despite the two-argument constructor
        return (type(self), (self.path, self.problem))


class SourceError(Exception):
    """A whole source that cannot be used (missing folder, no records, unreadable label table)."""


@dataclass
class RawRecord:
    """One record as read from disk, before preprocessing.

    ``signal`` is leads × time in millivolts; NaN marks samples the file declares invalid.
    ``labels`` maps a label-set name (e.g. ``superdiagnostic``) to that record's class names;
    a label set missing from the dict means "not labelled for this set", not "negative".
    """

    record_id: str
    path: str
    signal: np.ndarray
    fs: float
    lead_names: list[str]
    source: str
    patient_id: str = ""
    age: float = float("nan")
    sex: str = ""
    fold: int = -1
    split: str = ""
    labels: dict[str, list[str]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
