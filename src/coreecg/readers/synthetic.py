"""The built-in synthetic collection (``coreecg prepare synthetic``): seeded 12-lead ECGs with known labels.

Record ``i`` is ``synthetic_ecg(seed * 1_000_003 + i)``, so any subset, shard or machine produces
the same records. Folds 1–10 go round-robin (PTB-XL convention: 1–8 train, 9 val, 10 test).
Label sets: ``condition`` (the ten conditions, multi-label) and ``noise`` (which noises were added).
"""

from __future__ import annotations

from coreecg.readers.base import Source
from coreecg.readers.ptbxl import split_of_fold
from coreecg.record import RawRecord, SourceError
from coreecg.synthetic import CONDITION_NAMES, CONDITIONS, LEADS, NOISES, synthetic_ecg

_SEED_STRIDE = 1_000_003


class SyntheticSource(Source):
    kind = "synthetic"

    def __init__(self, records: int = 2000, fs: float = 500.0, seconds: float = 10.0, seed: int = 0):
        if records < 1:
            raise SourceError(f"synthetic: the record count must be at least 1, got {records}")
        if fs < 50 or seconds < 1:
            raise SourceError(f"synthetic: need fs ≥ 50 Hz and ≥ 1 s per record, got {fs} Hz, {seconds} s")
        self.records, self.fs, self.seconds, self.seed = records, float(fs), float(seconds), seed

    def record_keys(self) -> list[str]:
        return [f"syn{i:06d}" for i in range(self.records)]

    def read(self, key: str) -> RawRecord:
        index = int(key[3:])
        ecg = synthetic_ecg(self.seed * _SEED_STRIDE + index, self.fs, self.seconds)
        fold = index % 10 + 1
        return RawRecord(
            record_id=key,
            path=f"<synthetic seed {self.seed} record {index}>",
            signal=ecg.signal,
            fs=self.fs,
            lead_names=list(LEADS),
            source=self.kind,
            patient_id=key,
            fold=fold,
            split=split_of_fold(fold),
            labels={"condition": ecg.labels, "noise": ecg.noises},
        )

    def declared_classes(self) -> dict[str, list[str]]:
        return {"condition": list(CONDITIONS), "noise": list(NOISES)}

    def class_names(self) -> dict[str, dict[str, str]]:
        return {"condition": dict(CONDITION_NAMES)}

    def describe(self) -> dict:
        return {"kind": self.kind, "records": self.records, "fs": self.fs, "seconds": self.seconds, "seed": self.seed}
