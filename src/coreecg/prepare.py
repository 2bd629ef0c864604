"""Convert a source into a store: shard by shard, in parallel, resumable, partitionable across machines.

Records are assigned to shards by their position in the source's (deterministic) key list, so every
process and every machine agrees on which shard holds which records without talking to each other.
A shard is built in memory (a bounded number of records), written to a temporary folder and renamed
into place with ``done.json`` inside (the sizes and SHA-256 of its files): a re-run skips a shard whose
files match it, and converts again one that is incomplete, truncated or replaced, after removing the
leftovers of an interrupted conversion. A store in which no record could be stored is an error.
When every shard exists, the shards' small tables are merged into the store-level index, label
matrices, ``records.csv``, ``rejects.csv`` and, last, ``manifest.json``.

Accounting is exact: every key is either stored or listed in ``rejects.csv`` with its reason.
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coreecg.files import file_digest, read_array, write_json
from coreecg.leads import CANONICAL_LEADS, N_LEADS
from coreecg.preprocess import STORE_FORMAT_VERSION, PrepConfig, prepare_record
from coreecg.readers.base import Source
from coreecg.record import RawRecord, RecordError
from coreecg.store import SHARD_FILES, EmptyStoreError, StoreError, check_shard
from coreecg.version import __version__

SEGMENT_DTYPE = np.dtype([("record", "<i4"), ("offset", "<i8"), ("valid", "<i4")])


class StrictReject(Exception):
    """Raised under ``--strict`` at the first record that cannot be stored."""


@dataclass
class PrepareResult:
    records_in: int
    stored: int
    rejected: int
    segments: int
    shards_done: int
    shards_total: int
    finalized: bool
    seconds: float


def segment_offsets(n_samples: int, segment: int) -> list[tuple[int, int]]:
    """(offset, valid length) of consecutive segments covering a record; none of it is dropped.

    A record no longer than one segment gives one (padded) segment. A longer one is cut into
    back-to-back segments; a remainder becomes a last segment aligned to the record's end (it
    overlaps the previous one), so every segment is full and every sample is kept.
    """
    if n_samples <= segment:
        return [(0, n_samples)]
    offsets = list(range(0, n_samples - segment + 1, segment))
    if offsets[-1] + segment < n_samples:
        offsets.append(n_samples - segment)
    return [(offset, segment) for offset in offsets]


def _keys_hash(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def _record_entry(raw: RawRecord, prepared, n_segments: int, duration: float) -> dict:
    return {
        "record_id": raw.record_id,
        "source": raw.source,
        "path": raw.path,
        "patient_id": raw.patient_id,
        "age": None if np.isnan(raw.age) else raw.age,
        "sex": raw.sex,
        "fold": raw.fold,
        "split": raw.split,
        "fs_original": raw.fs,
        "duration_s": round(duration, 4),
        "n_segments": n_segments,
        "lead_mask": prepared.lead_mask.astype(int).tolist(),
        "lead_mean": prepared.lead_mean.tolist(),
        "record_std": prepared.record_std,
        "labels": raw.labels,
        "flags": prepared.flags,
    }


def convert_shard(source: Source, keys: list[str], shard_dir: str, config: PrepConfig, strict: bool) -> dict:
    """Read, preprocess and segment ``keys``; write the shard folder atomically. Returns its counts."""
    segment = config.segment_samples
    blocks: list[np.ndarray] = []
    segments: list[tuple[int, int, int]] = []
    records: list[dict] = []
    rejects: list[dict] = []
    for key in keys:
        try:
            raw = source.read(key)
            prepared = prepare_record(raw, config)
        except RecordError as error:
            rejects.append({"key": key, "path": error.path, "reason": error.problem})
        except Exception as error:  # an unforeseen failure is still a reject, never a crash or a drop
            last = traceback.extract_tb(error.__traceback__)[-1]
            reason = f"unexpected {type(error).__name__}: {error} (at {os.path.basename(last.filename)}:{last.lineno})"
            rejects.append({"key": key, "path": key, "reason": reason})
        else:
            n = prepared.signal.shape[1]
            pieces = segment_offsets(n, segment)
            for offset, valid in pieces:
                block = np.zeros((N_LEADS, segment), dtype=config.dtype)
                block[:, :valid] = prepared.signal[:, offset : offset + valid]
                blocks.append(block)
                segments.append((len(records), offset, valid))
            records.append(_record_entry(raw, prepared, len(pieces), n / config.fs))
            continue
        if strict:
            reject = rejects[-1]
            raise StrictReject(f"{reject['path']}: {reject['reason']}")
    tmp = f"{shard_dir}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    signals = np.stack(blocks) if blocks else np.zeros((0, N_LEADS, segment), dtype=config.dtype)
    np.save(os.path.join(tmp, "signals.npy"), signals)
    np.save(os.path.join(tmp, "segments.npy"), np.array(segments, dtype=SEGMENT_DTYPE))
    for name, rows in (("records.jsonl", records), ("rejects.jsonl", rejects)):
        with open(os.path.join(tmp, name), "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    done = {
        "keys": len(keys),
        "keys_hash": _keys_hash(keys),
        "config_hash": config.hash(),
        "stored": len(records),
        "rejected": len(rejects),
        "segments": len(segments),
        "files": {name: file_digest(os.path.join(tmp, name)) for name in SHARD_FILES},
    }
    write_json(os.path.join(tmp, "done.json"), done, sort_keys=True)
    try:
        os.rename(tmp, shard_dir)
    except OSError:  # another process finished the same shard first; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return done


# The source is handed to worker processes through fork, not pickled once per task.
_WORKER_SOURCE: Source | None = None


def _convert_task(args: tuple) -> tuple[int, dict]:
    shard, keys, shard_dir, config, strict = args
    assert _WORKER_SOURCE is not None
    return shard, convert_shard(_WORKER_SOURCE, keys, shard_dir, config, strict)


def parse_partition(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; ``None`` means the whole corpus (0, 1)."""
    if text is None:
        return 0, 1
    try:
        part, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard expects i/n such as 0/4, got {text!r}") from None
    if not 0 <= part < total:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return part, total


def _check_plan(out: str, plan: dict) -> None:
    path = os.path.join(out, "plan.json")
    if not os.path.isfile(path):
        os.makedirs(os.path.join(out, "shards"), exist_ok=True)
        write_json(path, plan, sort_keys=True)
        return
    with open(path, encoding="utf-8") as handle:
        existing = json.load(handle)
    if existing["config_hash"] != plan["config_hash"]:
        a, b = existing["config"], plan["config"]
        differing = ", ".join(f"{k}: {a.get(k)} -> {b[k]}" for k in b if a.get(k) != b[k])
        raise StoreError(
            f"{out}: this store was started with different preprocessing settings ({differing}); "
            "use a new --out folder rather than mixing them"
        )
    for field in ("source", "shard_size", "keys_hash"):
        if existing[field] != plan[field]:
            raise StoreError(
                f"{out}: this store was started from a different source or record list ({field} differs); "
                "use a new --out folder"
            )


def prepare_store(
    source: Source,
    out: str,
    config: PrepConfig,
    workers: int = 1,
    shard_size: int = 1000,
    partition: tuple[int, int] = (0, 1),
    strict: bool = False,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
) -> PrepareResult:
    """Convert ``source`` into the store at ``out`` (see the module docstring)."""
    global _WORKER_SOURCE
    start = time.perf_counter()
    keys = source.record_keys()
    if shard_size < 1:
        raise ValueError("shard size must be at least 1")
    n_shards = max(1, -(-len(keys) // shard_size))
    plan = {
        "format_version": STORE_FORMAT_VERSION,
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "source": source.describe(),
        "shard_size": shard_size,
        "records_in": len(keys),
        "keys_hash": _keys_hash(keys),
        "shards": n_shards,
    }
    _check_plan(out, plan)
    part, parts = partition
    shards_dir = os.path.join(out, "shards")
    todo = []
    for shard in range(part, n_shards, parts):
        shard_dir = os.path.join(shards_dir, f"{shard:05d}")
        shard_keys = keys[shard * shard_size : (shard + 1) * shard_size]
        for leftover in glob.glob(glob.escape(shard_dir) + ".tmp-*"):  # a conversion that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        if os.path.isdir(shard_dir):
            done, problem = check_shard(shard_dir)
            if problem is None:
                if done.get("keys_hash") != _keys_hash(shard_keys):
                    raise StoreError(f"{shard_dir}: holds other records than planned; use a new --out folder")
                continue
            log(f"prepare: {shard_dir} is damaged ({problem}); converting it again")
            shutil.rmtree(shard_dir)
        todo.append((shard, shard_keys, shard_dir, config, strict))
    mine = len(range(part, n_shards, parts))
    log(
        f"prepare: {len(keys)} records in {n_shards} shards; this run converts {len(todo)} "
        f"({mine - len(todo)} already done) with {workers} worker(s)"
    )
    _WORKER_SOURCE = source
    try:
        if workers > 1 and len(todo) > 1:
            context = multiprocessing.get_context("fork")
            with context.Pool(min(workers, len(todo))) as pool:
                results = pool.imap_unordered(_convert_task, todo)
                _report_progress(results, len(todo), start, log)
        else:
            _report_progress(map(_convert_task, todo), len(todo), start, log)
    finally:
        _WORKER_SOURCE = None
    finished = [s for s in range(n_shards) if os.path.isfile(os.path.join(shards_dir, f"{s:05d}", "done.json"))]
    finalized = len(finished) == n_shards
    totals = {"stored": 0, "rejected": 0, "segments": 0}
    if finalized:
        totals = finalize_store(out, source, config, plan)
        log(
            f"prepare: store {out} complete: {totals['stored']} records stored as {totals['segments']} segments, "
            f"{totals['rejected']} rejected (see rejects.csv), {time.perf_counter() - start:.1f} s"
        )
    elif parts == 1:
        raise StoreError(
            f"{out}: {n_shards - len(finished)} of {n_shards} shards are unfinished after converting "
            "every shard; run the same command again"
        )
    else:
        log(f"prepare: {len(finished)}/{n_shards} shards done; run again without --shard (or all parts) to finish")
    return PrepareResult(
        records_in=len(keys),
        stored=totals["stored"],
        rejected=totals["rejected"],
        segments=totals["segments"],
        shards_done=len(finished),
        shards_total=n_shards,
        finalized=finalized,
        seconds=time.perf_counter() - start,
    )


def _report_progress(results, total: int, start: float, log) -> None:
    counts: Counter = Counter()
    for done_count, (shard, done) in enumerate(results, start=1):
        counts.update(stored=done["stored"], rejected=done["rejected"])
        elapsed = time.perf_counter() - start
        eta = elapsed / done_count * (total - done_count)
        log(
            f"  shard {shard:05d} done ({done_count}/{total}): {done['stored']} stored, {done['rejected']} rejected"
            f" | total {counts['stored']} stored, {counts['rejected']} rejected | {elapsed:.0f} s, ETA {eta:.0f} s"
        )


def _read_jsonl(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not readable ({error})") from None


def finalize_store(out: str, source: Source, config: PrepConfig, plan: dict) -> dict:
    """Merge the shards' tables into the store-level index, labels, CSVs and manifest."""
    shards_dir = os.path.join(out, "shards")
    records: list[dict] = []
    rejects: list[dict] = []
    seg_arrays: dict[str, list[np.ndarray]] = {k: [] for k in ("shard", "row", "record", "offset", "valid")}
    shard_info = []
    for shard in range(plan["shards"]):
        name = f"{shard:05d}"
        folder = os.path.join(shards_dir, name)
        try:
            segments = read_array(os.path.join(folder, "segments.npy"))
            if segments.dtype != SEGMENT_DTYPE or segments.ndim != 1:
                raise ValueError(f"{os.path.join(folder, 'segments.npy')}: not a shard's segment table")
            records_here = _read_jsonl(os.path.join(folder, "records.jsonl"))
            rejects_here = _read_jsonl(os.path.join(folder, "rejects.jsonl"))
        except ValueError as error:
            raise StoreError(f"{error}; the shard is damaged: delete {folder} and run the same command again") from None
        seg_arrays["shard"].append(np.full(len(segments), shard, dtype=np.int32))
        seg_arrays["row"].append(np.arange(len(segments), dtype=np.int32))
        seg_arrays["record"].append(segments["record"] + len(records))
        seg_arrays["offset"].append(segments["offset"])
        seg_arrays["valid"].append(segments["valid"])
        records.extend(records_here)
        rejects.extend(rejects_here)
        done, _ = check_shard(folder)
        shard_info.append({"name": name, "segments": len(segments), "files": (done or {}).get("files", {})})
    if len(records) + len(rejects) != plan["records_in"]:
        raise StoreError(
            f"{out}: {plan['records_in']} records in, but {len(records)} stored + {len(rejects)} rejected; "
            "a shard is damaged: delete its folder and re-run"
        )
    segment = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in seg_arrays.items()}
    np.savez(
        _tmp(out, "index.npz"),
        segment_shard=segment["shard"].astype(np.int32),
        segment_row=segment["row"].astype(np.int32),
        segment_record=segment["record"].astype(np.int32),
        segment_offset=segment["offset"].astype(np.int64),
        segment_valid=segment["valid"].astype(np.int32),
        lead_mask=np.array([r["lead_mask"] for r in records], dtype=bool).reshape(-1, N_LEADS),
        lead_mean=np.array([r["lead_mean"] for r in records], dtype=np.float32).reshape(-1, N_LEADS),
        record_std=np.array([r["record_std"] for r in records], dtype=np.float32),
        fold=np.array([r["fold"] for r in records], dtype=np.int16),
    )
    os.replace(_tmp(out, "index.npz"), os.path.join(out, "index.npz"))
    label_sets = _write_label_sets(out, source, records)
    table = pd.DataFrame(
        {
            "record_id": [r["record_id"] for r in records],
            "source": [r["source"] for r in records],
            "patient_id": [r["patient_id"] for r in records],
            "age": [r["age"] for r in records],
            "sex": [r["sex"] for r in records],
            "fold": [r["fold"] for r in records],
            "split": [r["split"] for r in records],
            "fs_original": [r["fs_original"] for r in records],
            "duration_s": [r["duration_s"] for r in records],
            "n_segments": [r["n_segments"] for r in records],
            "leads": [",".join(n for n, m in zip(CANONICAL_LEADS, r["lead_mask"], strict=True) if m) for r in records],
            "flags": [";".join(r["flags"]) for r in records],
            "path": [r["path"] for r in records],
        }
    )
    for name in label_sets:
        table[f"labels_{name}"] = [";".join(r["labels"].get(name, [])) for r in records]
    table.to_csv(_tmp(out, "records.csv"), index=False)
    os.replace(_tmp(out, "records.csv"), os.path.join(out, "records.csv"))
    pd.DataFrame(rejects, columns=["key", "path", "reason"]).to_csv(_tmp(out, "rejects.csv"), index=False)
    os.replace(_tmp(out, "rejects.csv"), os.path.join(out, "rejects.csv"))
    if not records:  # no manifest: an empty store is never reported complete
        first = f" (the first: {rejects[0]['path']}: {rejects[0]['reason']})" if rejects else ""
        raise EmptyStoreError(
            f"{out}: none of the {plan['records_in']} records could be stored; every reason is in "
            f"{os.path.join(out, 'rejects.csv')}{first}"
        )
    flag_counts = Counter(flag.split(":")[0] for r in records for flag in r["flags"])
    manifest = {
        "format_version": STORE_FORMAT_VERSION,
        "coreecg_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "source": plan["source"],
        "leads": list(CANONICAL_LEADS),
        "records_in": plan["records_in"],
        "stored": len(records),
        "rejected": len(rejects),
        "segments": len(segment["shard"]),
        "flags": dict(sorted(flag_counts.items())),
        "label_sets": label_sets,
        "shards": shard_info,
        "files": {
            name: file_digest(os.path.join(out, name))
            for name in ["index.npz", "records.csv", "rejects.csv"] + [f"labels/{n}.npz" for n in label_sets]
        },
    }
    write_json(os.path.join(out, "manifest.json"), manifest, sort_keys=True)
    return {"stored": len(records), "rejected": len(rejects), "segments": manifest["segments"]}


def _tmp(out: str, name: str) -> str:
    """A temporary name in the same folder that keeps the extension (``np.savez`` appends one otherwise)."""
    return os.path.join(out, f".tmp-{os.getpid()}-{name}")


def _write_label_sets(out: str, source: Source, records: list[dict]) -> dict:
    """One multi-hot matrix per label set, classes in the source's declared order, else sorted."""
    declared = source.declared_classes()
    names = source.class_names()
    set_names = sorted(set(declared) | {name for r in records for name in r["labels"]})
    os.makedirs(os.path.join(out, "labels"), exist_ok=True)
    info = {}
    for name in set_names:
        seen = sorted({c for r in records for c in r["labels"].get(name, [])})
        classes = list(declared.get(name, [])) + [c for c in seen if c not in declared.get(name, [])]
        column = {c: i for i, c in enumerate(classes)}
        matrix = np.zeros((len(records), len(classes)), dtype=np.uint8)
        labelled = np.zeros(len(records), dtype=bool)
        for row, record in enumerate(records):
            if name in record["labels"]:
                labelled[row] = True
                matrix[row, [column[c] for c in record["labels"][name]]] = 1
        path = os.path.join(out, "labels", f"{name}.npz")
        tmp = _tmp(os.path.join(out, "labels"), f"{name}.npz")
        np.savez(tmp, matrix=matrix, labelled=labelled)
        os.replace(tmp, path)
        info[name] = {
            "classes": classes,
            "names": {c: names.get(name, {}).get(c, c) for c in classes},
            "labelled": int(labelled.sum()),
            "positives": matrix.sum(axis=0).astype(int).tolist(),
        }
    return info
