"""CODE-15% (Ribeiro et al.): HDF5 files with ``tracings`` (N × 4096 × 12, 400 Hz) and ``exam_id``,
plus ``exams.csv`` with age, sex, patient and six labels.

Tracings are zero-padded to 4096 samples; the padding is trimmed so it is never mistaken for
signal. Each HDF5 file ends with an all-zero filler row (exam_id 0), which is rejected as empty.
Amplitudes are taken as millivolts (``scale_to_mv`` changes that).
"""

from __future__ import annotations

import glob
import math
import os

import numpy as np

from coreecg.leads import CANONICAL_LEADS
from coreecg.readers.base import Source
from coreecg.readers.ptbxl import read_csv_rows
from coreecg.record import RawRecord, RecordError, SourceError

CODE15_CLASSES = ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")
CODE15_FS = 400.0


def _open_hdf5(path: str):
    try:
        import h5py
    except ImportError:
        raise SourceError("reading HDF5 needs h5py: pip install 'coreecg[hdf5]'") from None
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise SourceError(f"{path}: not a readable HDF5 file ({error})") from None


class Code15Source(Source):
    kind = "code15"

    def __init__(self, path: str, exams: str | None = None, scale_to_mv: float = 1.0):
        if os.path.isdir(path):
            files = sorted(glob.glob(os.path.join(path, "*.hdf5")) + glob.glob(os.path.join(path, "*.h5")))
            exams = exams or os.path.join(path, "exams.csv")
        elif os.path.isfile(path):
            files = [path]
            exams = exams or os.path.join(os.path.dirname(path), "exams.csv")
        else:
            raise SourceError(f"{path}: no such file or folder")
        if not files:
            raise SourceError(f"{path}: no .hdf5 files found")
        self.scale_to_mv = scale_to_mv
        self.exams: dict[str, dict[str, str]] = {}
        if os.path.isfile(exams):
            for row in read_csv_rows(exams):
                self.exams[row.get("exam_id", "").strip()] = row
        self.exams_path = exams
        self._keys: list[str] = []
        self._exam_ids: dict[str, str] = {}
        for file in files:
            with _open_hdf5(file) as handle:
                if "tracings" not in handle or "exam_id" not in handle:
                    raise SourceError(f"{file}: a CODE-15 file needs the datasets 'tracings' and 'exam_id'")
                tracings = handle["tracings"]
                if tracings.ndim != 3 or tracings.shape[2] != len(CANONICAL_LEADS):
                    raise SourceError(f"{file}: 'tracings' should be N × time × 12, got {tracings.shape}")
                exam_ids = handle["exam_id"][:]
                if len(exam_ids) != tracings.shape[0]:
                    raise SourceError(f"{file}: {len(exam_ids)} exam ids for {tracings.shape[0]} tracings")
            for row, exam_id in enumerate(exam_ids):
                key = f"{os.path.basename(file)}:{row}"
                self._keys.append(key)
                self._exam_ids[key] = str(int(exam_id))
        self.files = {os.path.basename(f): f for f in files}
        self._handles: dict = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}  # HDF5 handles do not survive pickling or fork; reopen per process
        return state

    def record_keys(self) -> list[str]:
        return self._keys

    def read(self, key: str) -> RawRecord:
        file_name, row = key.rsplit(":", 1)
        path = self.files[file_name]
        if path not in self._handles:
            self._handles[path] = _open_hdf5(path)
        where = f"{path} row {row}"
        tracing = np.asarray(self._handles[path]["tracings"][int(row)], dtype=np.float64).T * self.scale_to_mv
        nonzero = np.flatnonzero(np.any(tracing != 0, axis=0))
        if nonzero.size == 0:
            raise RecordError(where, "tracing is all zeros (the file's filler row, or an empty exam)")
        tracing = tracing[:, nonzero[0] : nonzero[-1] + 1]
        exam_id = self._exam_ids[key]
        record = RawRecord(
            record_id=exam_id,
            path=where,
            signal=tracing,
            fs=CODE15_FS,
            lead_names=list(CANONICAL_LEADS),
            source="CODE-15",
        )
        meta = self.exams.get(exam_id)
        if meta is None:
            record.flags.append("no_exam_row")
            return record
        record.patient_id = meta.get("patient_id", "").strip()
        try:
            record.age = float(meta.get("age") or math.nan)
        except ValueError:
            raise RecordError(f"{self.exams_path} (exam_id {exam_id})", "age is not a number") from None
        record.sex = {"true": "M", "false": "F"}.get(meta.get("is_male", "").strip().casefold(), "")
        record.labels["code15"] = [c for c in CODE15_CLASSES if meta.get(c, "").strip().casefold() in ("true", "1")]
        return record

    def declared_classes(self) -> dict[str, list[str]]:
        return {"code15": list(CODE15_CLASSES)}

    def describe(self) -> dict:
        return {"kind": self.kind, "files": sorted(self.files), "exams": os.path.abspath(self.exams_path)}
