"""Reading a prepared store: memory-mapped signal shards plus small metadata arrays.

Layout of a store folder (written by ``coreecg.prepare``)::

    manifest.json             config + hash, source, counts, label sets; written last
    plan.json                 settings fixed when the store was started (guards resumes)
    shards/NNNNN/signals.npy  segments × 12 × segment_samples, memory-mapped on read
    shards/NNNNN/segments.npy per segment: record row in shard, offset, valid length
    shards/NNNNN/records.jsonl and rejects.jsonl, done.json (written last, atomically; sizes and SHA-256
                              of the shard's files)
    records.csv               one row per stored record (ids, patient, fold, split, labels, flags)
    index.npz                 per segment and per record arrays the dataset needs
    labels/<set>.npz          per label set: multi-hot record × class matrix, and which records are labelled
    rejects.csv               every record that was not stored, with the reason

The manifest repeats every file's size and SHA-256: ``Store.verify`` (``coreecg inspect``, with
``--verify`` for the hashes) finds truncated, replaced or leftover files, and a damaged shard is named
when read rather than failing deep inside NumPy.

Signals are never loaded whole: ``Store.signals(shard)`` is a read-only memmap, opened lazily and
dropped on pickling so a ``Store`` inside DataLoader workers reopens its own maps.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coreecg.files import file_digest, read_array
from coreecg.preprocess import STORE_FORMAT_VERSION, PrepConfig

SHARD_FILES = ("signals.npy", "segments.npy", "records.jsonl", "rejects.jsonl")
REPAIR_HINT = "re-run the coreecg prepare command that made the store to repair it"


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (MemAvailable; total memory elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class StoreError(Exception):
    """A store that cannot be opened or mixed, with the folder named."""


class EmptyStoreError(StoreError):
    """No record of a source could be stored; every reason is in the store's rejects.csv."""


@dataclass(frozen=True)
class LabelSet:
    name: str
    classes: list[str]
    matrix: np.ndarray  # uint8, records × classes
    labelled: np.ndarray  # bool, records: does this record carry labels of this set at all?
    names: dict[str, str]


class Store:
    """A finished store. Segment-level arrays are indexed by segment, record-level ones by record row."""

    def __init__(self, path: str):
        self.path = path
        manifest_path = os.path.join(path, "manifest.json")
        if not os.path.isfile(manifest_path):
            partial = os.path.isfile(os.path.join(path, "plan.json"))
            raise StoreError(
                f"{path}: not a finished coreecg store"
                + (" (conversion incomplete: re-run coreecg prepare to finish it)" if partial else "")
            )
        try:
            with open(manifest_path, encoding="utf-8") as handle:
                self.manifest = json.load(handle)
        except (OSError, ValueError) as error:
            raise StoreError(f"{manifest_path}: unreadable ({error}); {REPAIR_HINT}") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("format_version") != STORE_FORMAT_VERSION:
            found = self.manifest.get("format_version") if isinstance(self.manifest, dict) else None
            raise StoreError(
                f"{path}: store format {found} is not supported "
                f"(this coreecg reads format {STORE_FORMAT_VERSION}); re-run coreecg prepare"
            )
        try:
            self.config = PrepConfig.from_dict(self.manifest["config"])
            self.config_hash: str = self.manifest["config_hash"]
            self.shard_names: list[str] = [s["name"] for s in self.manifest["shards"]]
            if not isinstance(self.manifest["label_sets"], dict):
                raise TypeError("label_sets is not a mapping")
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise StoreError(f"{manifest_path}: malformed ({type(error).__name__}: {error})") from None
        index_path = os.path.join(path, "index.npz")
        try:
            with np.load(index_path) as index:
                self.segment_shard = index["segment_shard"]
                self.segment_row = index["segment_row"]
                self.segment_record = index["segment_record"]
                self.segment_offset = index["segment_offset"]
                self.segment_valid = index["segment_valid"]
                self.lead_mask = index["lead_mask"]
                self.lead_mean = index["lead_mean"]
                self.record_std = index["record_std"]
                self.fold = index["fold"]
        except Exception as error:  # zipfile, NumPy and OS errors alike: the file is damaged
            raise StoreError(f"{index_path}: unreadable ({type(error).__name__}: {error}); {REPAIR_HINT}") from None
        if not len(self.segment_shard) == len(self.segment_row) == len(self.segment_offset):
            raise StoreError(f"{index_path}: its segment arrays differ in length; {REPAIR_HINT}")
        self._records: pd.DataFrame | None = None
        self._maps: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = {}  # memmaps are reopened in each process, never copied
        return state

    def __repr__(self) -> str:
        return f"Store({self.path!r}: {self.n_records} records, {self.n_segments} segments, {self.fs:g} Hz)"

    @property
    def fs(self) -> float:
        return self.config.fs

    @property
    def n_segments(self) -> int:
        return len(self.segment_shard)

    @property
    def n_records(self) -> int:
        return len(self.record_std)

    @property
    def records(self) -> pd.DataFrame:
        """The metadata table, one row per stored record (loaded on first use)."""
        if self._records is None:
            path = os.path.join(self.path, "records.csv")
            try:
                records = pd.read_csv(
                    path,
                    dtype={"record_id": str, "patient_id": str, "split": str, "flags": str},
                    keep_default_na=False,
                )
            except Exception as error:  # pandas' parser errors, bad encodings, OS errors
                raise StoreError(f"{path}: unreadable ({type(error).__name__}: {error}); {REPAIR_HINT}") from None
            if len(records) != self.n_records or "record_id" not in records:
                raise StoreError(f"{path}: {len(records)} rows for {self.n_records} records; {REPAIR_HINT}")
            self._records = records
        return self._records

    @property
    def split(self) -> np.ndarray:
        return self.records["split"].to_numpy(dtype=str)

    def signals(self, shard: int) -> np.ndarray:
        """The shard's segments × 12 × samples array, memory-mapped read-only."""
        array = self._maps.get(shard)
        if array is None:
            file = os.path.join(self.path, "shards", self.shard_names[shard], "signals.npy")
            expected = self.manifest["shards"][shard].get("files", {}).get("signals.npy", {}).get("bytes")
            size = os.path.getsize(file) if os.path.isfile(file) else None
            if size is None or (expected is not None and size != expected):
                found = "missing" if size is None else f"{size} bytes, the manifest says {expected}"
                raise StoreError(f"{file}: damaged shard ({found}); {REPAIR_HINT}")
            try:
                array = read_array(file, mmap=True)
            except ValueError as error:
                raise StoreError(f"{error}; {REPAIR_HINT}") from None
            segments = self.manifest["shards"][shard].get("segments")
            if array.ndim != 3 or (segments is not None and len(array) != segments):
                raise StoreError(
                    f"{file}: damaged shard (shape {array.shape}, {segments} segments expected); {REPAIR_HINT}"
                )
            self._maps[shard] = array
        return array

    def verify(self, content: bool = False) -> list[str]:
        """Every problem found, one line each naming the file: sizes against the manifest (and SHA-256 with
        ``content``), shards without ``done.json``, and leftovers of an interrupted conversion."""
        problems = []
        for info in self.manifest["shards"]:
            folder = os.path.join(self.path, "shards", info["name"])
            _, problem = check_shard(folder, info.get("files"), content)
            if problem:
                problems.append(f"{folder}: {problem}")
        for name, expected in self.manifest.get("files", {}).items():
            problem = check_file(os.path.join(self.path, name), expected, content)
            if problem:
                problems.append(f"{os.path.join(self.path, name)}: {problem}")
        for leftover in sorted(glob.glob(os.path.join(self.path, "shards", "*.tmp-*"))):
            problems.append(f"{leftover}: left over from an interrupted conversion (safe to delete)")
        return problems

    def prefetch(self, shards: Sequence[int] | None = None, memory_share: float = 0.5) -> bool:
        """Ask the kernel to read these signal shards into the page cache now; False where it was not asked.

        Training reads random crops through the memmap. On a cold cache each crop is a random page
        fault, and a slow disk then starves the loop: on PTB-XL the first pretraining steps waited
        82 % of the time for data (3 samples/s instead of 56). The hint is asynchronous (the reads
        run while the model starts) and is skipped when the shards exceed ``memory_share`` of the
        memory available, where it would only evict pages the run needs.
        """
        if not hasattr(os, "posix_fadvise"):
            return False
        chosen = range(len(self.shard_names)) if shards is None else sorted(set(int(s) for s in shards))
        files = [os.path.join(self.path, "shards", self.shard_names[s], "signals.npy") for s in chosen]
        if sum(os.path.getsize(f) for f in files) > memory_share * available_memory():
            return False
        for file in files:
            descriptor = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(descriptor)
        return True

    def segment(self, index: int) -> np.ndarray:
        """One segment in millivolts (12 × segment_samples), un-normalized."""
        return np.asarray(self.signals(int(self.segment_shard[index]))[self.segment_row[index]])

    @property
    def label_set_names(self) -> list[str]:
        return list(self.manifest["label_sets"])

    def label_set(self, name: str) -> LabelSet:
        info = self.manifest["label_sets"].get(name)
        if info is None:
            known = ", ".join(self.label_set_names) or "none"
            raise StoreError(f"{self.path}: no label set {name!r} (this store has: {known})")
        path = os.path.join(self.path, "labels", f"{name}.npz")
        try:
            with np.load(path) as data:
                matrix, labelled = data["matrix"], data["labelled"]
        except Exception as error:  # zipfile, NumPy and OS errors alike: the file is damaged
            raise StoreError(f"{path}: unreadable ({type(error).__name__}: {error}); {REPAIR_HINT}") from None
        if matrix.shape != (self.n_records, len(info["classes"])) or labelled.shape != (self.n_records,):
            raise StoreError(f"{path}: its arrays do not fit the store's {self.n_records} records; {REPAIR_HINT}")
        return LabelSet(name, list(info["classes"]), matrix, labelled, info.get("names", {}))


def check_file(path: str, expected: dict, content: bool = False) -> str | None:
    """What is wrong with one file of a store against its recorded size (and hash), or None."""
    if not os.path.isfile(path):
        return "missing"
    try:
        size, want = os.path.getsize(path), int(expected["bytes"])
    except (KeyError, TypeError, ValueError):
        return "its recorded size is malformed"
    if size != want:
        return f"{size} bytes, {want} expected (truncated or replaced)"
    if content and file_digest(path)["sha256"] != expected.get("sha256"):
        return "content differs from its SHA-256 at prepare time"
    return None


def check_shard(folder: str, files: dict | None = None, content: bool = False) -> tuple[dict | None, str | None]:
    """A shard folder's ``done.json`` and what is wrong with the shard (None when it is whole). ``files``:
    the sizes and hashes to check against (the manifest's); by default those in ``done.json``."""
    if not os.path.isdir(folder):
        return None, "missing"
    try:
        with open(os.path.join(folder, "done.json"), encoding="utf-8") as handle:
            done = json.load(handle)
    except FileNotFoundError:
        return None, "incomplete (no done.json)"
    except (OSError, ValueError) as error:
        return None, f"done.json is unreadable ({error})"
    if not isinstance(done, dict):
        return None, "done.json is malformed"
    files = files if files is not None else done.get("files", {})
    if not isinstance(files, dict):
        return done, "done.json is malformed"
    for name, expected in files.items():
        problem = check_file(os.path.join(folder, name), expected, content)
        if problem:
            return done, f"{name}: {problem}"
    return done, None


def check_same_preprocessing(stores: list[Store]) -> None:
    """Refuse to combine stores whose samples mean different things (rate, band, length, ...)."""
    reference = stores[0]
    for other in stores[1:]:
        if other.config_hash != reference.config_hash:
            a, b = reference.config.to_dict(), other.config.to_dict()
            differing = ", ".join(f"{k}: {a[k]} vs {b[k]}" for k in a if a[k] != b.get(k))
            raise StoreError(
                f"stores {reference.path} and {other.path} were prepared with different settings ({differing})"
            )
