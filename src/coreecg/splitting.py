"""Train / validation / test splits for a store whose source has none (CinC, CODE-15, a hospital's export).

Every patient goes to one part (when the store knows patients; otherwise each record is its own
group), and the parts keep the label proportions of every label set, by iterative stratification of
the groups. The split is written into the store (``records.csv``'s ``split`` column, and how it was
made in ``manifest.json``), so every later command (probe, finetune, benchmark, embed) agrees on it.
"""

from __future__ import annotations

import os
import time

import numpy as np

from coreecg.evaluation.stratify import iterative_stratification
from coreecg.files import file_digest, write_atomically, write_json
from coreecg.store import Store, StoreError

PARTS = ("train", "val", "test")


def group_ids(store: Store) -> tuple[np.ndarray, str]:
    """One group per patient where patient ids exist, else one per record; and which it was."""
    patients = store.records["patient_id"].astype(str).str.strip()
    if (patients != "").all():
        return patients.to_numpy(), "patient_id"
    if (patients != "").any():
        own = np.array([f"record:{i}" for i in range(len(patients))])
        return np.where(patients != "", patients.to_numpy(), own), "patient_id, else the record"
    return np.array([f"record:{i}" for i in range(len(patients))]), "record"


def stratification_labels(store: Store, label_sets: list[str] | None) -> np.ndarray:
    """Records × classes of every chosen label set side by side (unlabelled records: zeros)."""
    names = label_sets or store.label_set_names
    blocks = [store.label_set(name).matrix.astype(bool) for name in names]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((store.n_records, 0), dtype=bool)


def split_store(
    path: str, val: float, test: float, seed: int = 0, label_sets: list[str] | None = None, force: bool = False
) -> dict:
    """Assign every record of the store at ``path`` to train, val or test, and write it into the store."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1 and val > 0):
        raise ValueError(f"--val {val} and --test {test}: need 0 < val, 0 <= test and val + test < 1")
    store = Store(path)
    present = sorted(set(store.split) - {""})
    if present and not force:
        raise StoreError(
            f"{path}: already split ({', '.join(present)}, from its source or an earlier split); --force replaces it"
        )
    groups, grouped_by = group_ids(store)
    labels = stratification_labels(store, label_sets)
    names, inverse = np.unique(groups, return_inverse=True)
    group_labels = np.zeros((len(names), labels.shape[1]), dtype=bool)
    np.logical_or.at(group_labels, inverse, labels)
    used = [name for name, share in zip(PARTS, (1.0 - val - test, val, test), strict=True) if share > 0]
    shares = {"train": 1.0 - val - test, "val": val, "test": test}
    part = iterative_stratification(group_labels, [shares[name] for name in used], seed)[inverse]
    split = np.array(used)[part]
    records = store.records.copy()
    records["split"] = split
    records_path = os.path.join(path, "records.csv")
    write_atomically(records_path, lambda temp: records.to_csv(temp, index=False))
    manifest = dict(store.manifest)
    counts = {name: int((split == name).sum()) for name in PARTS}
    manifest["split"] = {
        "made_by": "coreecg split",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "proportions": {"train": 1.0 - val - test, "val": val, "test": test},
        "seed": seed,
        "groups": grouped_by,
        "label_sets": label_sets or store.label_set_names,
        "records": counts,
    }
    if "files" in manifest:
        manifest["files"] = {**manifest["files"], "records.csv": file_digest(records_path)}
    write_json(os.path.join(path, "manifest.json"), manifest, sort_keys=True)
    return manifest["split"]
