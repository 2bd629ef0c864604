"""The contract every source of ECG records follows.

A source lists its record keys up front (cheap: paths or ids, never signals), in a deterministic
order, and reads one record per call. That is all the store writer needs to convert a corpus of
any size shard by shard, in several processes or on several machines.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import ClassVar

from coreecg.readers.wfdb_format import parse_header, read_signals
from coreecg.record import RawRecord, SourceError


class Source(ABC):
    """A collection of ECG records of one kind (PTB-XL, a WFDB folder, a NumPy array, ...)."""

    kind: ClassVar[str]

    @abstractmethod
    def record_keys(self) -> list[str]:
        """Every record key, deterministic order. Keys that will fail to read are included."""

    @abstractmethod
    def read(self, key: str) -> RawRecord:
        """One record; raises ``RecordError`` (naming the file and problem) when it is unusable."""

    def declared_classes(self) -> dict[str, list[str]]:
        """Class lists a source fixes in advance (in its order), per label set; others are inferred."""
        return {}

    def class_names(self) -> dict[str, dict[str, str]]:
        """Human-readable names of label classes, per label set, where the source has them."""
        return {}

    def describe(self) -> dict:
        """What to record about this source in the store manifest."""
        return {"kind": self.kind}


def require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise SourceError(f"{path}: {what} is not a folder" if os.path.exists(path) else f"{path}: no such folder")
    return path


def require_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise SourceError(f"{path}: {what} not found")
    return path


def find_headers(root: str) -> list[str]:
    """Relative paths (without ``.hea``) of every WFDB header below ``root``, sorted."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(files):
            if name.endswith(".hea"):
                found.append(os.path.relpath(os.path.join(directory, name[:-4]), root))
    return found


def read_wfdb_record(header_path: str, record_id: str, source: str) -> tuple[RawRecord, list[str]]:
    """A WFDB record as a ``RawRecord`` (leads named by the signal descriptions) and its header comments."""
    header = parse_header(header_path)
    signal, problems = read_signals(header)
    record = RawRecord(
        record_id=record_id,
        path=header_path,
        signal=signal,
        fs=header.fs,
        lead_names=[s.name for s in header.signals],
        source=source,
        flags=problems,
    )
    return record, header.comments
