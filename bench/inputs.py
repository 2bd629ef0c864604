"""Benchmark inputs: seeded synthetic ECGs written as WFDB files and prepared as a store (they exist anywhere),
and the WFDB files behind a store's records (what the per-item reference reads)."""

from __future__ import annotations

import os

import numpy as np
import wfdb

from coreecg.leads import CANONICAL_LEADS
from coreecg.prepare import prepare_store
from coreecg.preprocess import PrepConfig
from coreecg.readers.wfdb_folder import WfdbFolderSource
from coreecg.store import Store
from coreecg.synthetic import synthetic_ecg


def synthetic_inputs(folder: str, records: int, fs: float = 100.0, seconds: float = 10.0) -> str:
    """``records`` synthetic 12-lead ECGs as WFDB files under ``folder/…/wfdb``, prepared as the store
    ``folder/…/store``, whose path is returned. Reuses what an earlier call with the same arguments left."""
    folder = os.path.join(folder, f"{records}-records-{fs:g}hz-{seconds:g}s")
    root, store = os.path.join(folder, "wfdb"), os.path.join(folder, "store")
    os.makedirs(root, exist_ok=True)
    for i in range(records):
        name = f"syn{i:05d}"
        if not os.path.exists(os.path.join(root, name + ".hea")):
            signal = synthetic_ecg(seed=i, fs=fs, seconds=seconds).signal.T  # T × 12, mV
            wfdb.wrsamp(
                name,
                fs=fs,
                units=["mV"] * 12,
                sig_name=list(CANONICAL_LEADS),
                p_signal=np.ascontiguousarray(signal),
                fmt=["16"] * 12,
                adc_gain=[1000.0] * 12,
                baseline=[0] * 12,
                write_dir=root,
            )
    if not os.path.exists(os.path.join(store, "manifest.json")):
        prepare_store(WfdbFolderSource(root), store, PrepConfig(fs=fs), workers=1, log=lambda _: None)
    return store


def store_paths(store: Store, wfdb_root: str | None = None) -> list[str]:
    """WFDB paths (no extension, for ``wfdb.rdsamp``) of the store's records, in row order.

    records.csv holds each header's path on the machine that prepared the store; ``wfdb_root``
    re-roots them where the same folder lies on this machine.
    """
    prepared_root = store.manifest["source"]["root"]
    return [
        os.path.join(wfdb_root or prepared_root, os.path.relpath(os.path.splitext(p)[0], prepared_root))
        for p in store.records["path"]
    ]
