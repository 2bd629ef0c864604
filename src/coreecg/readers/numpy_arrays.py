"""ECGs already in a NumPy array (records × leads × time), with their rate and lead names given.

Optional metadata table (CSV, one row per record, in array order): columns ``id``, ``patient_id``,
``fold``, ``split``, ``age``, ``sex`` are metadata when present; every other column must hold 0/1
and is a class of the label set named by ``label_set``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from coreecg.files import read_array
from coreecg.leads import lead_index
from coreecg.readers.base import Source, require_file
from coreecg.readers.ptbxl import read_csv_rows
from coreecg.record import RATE_RANGE_HZ, RawRecord, RecordError, SourceError

_META_COLUMNS = ("id", "patient_id", "fold", "split", "age", "sex")


class NumpySource(Source):
    kind = "numpy"

    def __init__(
        self,
        path: str,
        fs: float | None = None,
        leads: list[str] | None = None,
        meta: str | None = None,
        label_set: str = "labels",
    ):
        self.path = require_file(path, "NumPy array file")
        if fs is None or leads is None:
            raise SourceError(f"{path}: a NumPy source needs its sampling rate (--fs) and lead names (--leads)")
        if not (math.isfinite(fs) and RATE_RANGE_HZ[0] <= fs <= RATE_RANGE_HZ[1]):
            raise SourceError(f"--fs {fs:g}: a sampling rate must be {RATE_RANGE_HZ[0]:g} to {RATE_RANGE_HZ[1]:g} Hz")
        try:
            array = read_array(path, mmap=True)
        except ValueError as error:
            raise SourceError(str(error)) from None
        if array.ndim != 3:
            raise SourceError(f"{path}: expected an array of records × leads × time, got shape {array.shape}")
        if array.shape[1] != len(leads):
            raise SourceError(
                f"{path}: the array has {array.shape[1]} leads per record but {len(leads)} lead names were given"
            )
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise SourceError(f"{path}: array dtype {array.dtype} is not real numbers")
        unknown = [name for name in leads if lead_index(name) is None]
        if len(unknown) == len(leads):
            raise SourceError(f"{path}: none of the lead names {leads} is a standard 12-lead name")
        self.fs, self.leads, self.label_set = float(fs), list(leads), label_set
        self.n_records = array.shape[0]
        self._array: np.ndarray | None = None
        self.rows: list[dict[str, str]] = []
        self.classes: list[str] = []
        if meta is not None:
            self.rows = read_csv_rows(meta)
            if len(self.rows) != self.n_records:
                raise SourceError(f"{meta}: {len(self.rows)} rows, but {path} holds {self.n_records} records")
            self.classes = [c for c in (self.rows[0] if self.rows else {}) if c not in _META_COLUMNS]
            for line, row in enumerate(self.rows, start=2):
                bad = [c for c in self.classes if row[c].strip() not in ("0", "1")]
                if bad:
                    raise SourceError(f"{meta} line {line}: class columns {bad} must hold 0 or 1")
        ids = [row.get("id", "").strip() or str(i) for i, row in enumerate(self.rows)] or [
            str(i) for i in range(self.n_records)
        ]
        if len(set(ids)) != len(ids):
            raise SourceError(f"{meta}: the id column has duplicates")
        self._keys = ids
        self._row_of = {key: i for i, key in enumerate(ids)}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_array"] = None  # reopened (memory-mapped) in each worker, never pickled
        return state

    def record_keys(self) -> list[str]:
        return self._keys

    def read(self, key: str) -> RawRecord:
        if self._array is None:
            self._array = read_array(self.path, mmap=True)
        i = self._row_of[key]
        record = RawRecord(
            record_id=key,
            path=f"{self.path}[{i}]",
            signal=np.asarray(self._array[i], dtype=np.float64),
            fs=self.fs,
            lead_names=self.leads,
            source="numpy",
        )
        if self.rows:
            row = self.rows[i]
            record.patient_id = row.get("patient_id", "").strip()
            try:
                record.fold = int(row.get("fold") or -1)
                record.age = float(row.get("age") or math.nan)
            except ValueError:
                raise RecordError(record.path, "fold or age in the metadata table is not a number") from None
            record.split = row.get("split", "").strip()
            record.sex = row.get("sex", "").strip().upper()[:1]
            if self.classes:
                record.labels[self.label_set] = [c for c in self.classes if row[c].strip() == "1"]
        return record

    def declared_classes(self) -> dict[str, list[str]]:
        return {self.label_set: list(self.classes)} if self.classes else {}

    def describe(self) -> dict:
        return {"kind": self.kind, "path": os.path.abspath(self.path), "fs": self.fs, "leads": self.leads}
