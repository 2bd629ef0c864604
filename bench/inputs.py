"""Benchmark inputs that exist anywhere: seeded synthetic ECGs written as WFDB files and prepared as a store."""

from __future__ import annotations

import os

import numpy as np
import wfdb

from coreecg.leads import CANONICAL_LEADS
from coreecg.prepare import prepare_store
from coreecg.preprocess import PrepConfig
from coreecg.readers.wfdb_folder import WfdbFolderSource
from coreecg.synthetic import synthetic_ecg


def synthetic_inputs(folder: str, records: int, fs: float = 100.0, seconds: float = 10.0) -> tuple[list[str], str]:
    """``records`` synthetic 12-lead ECGs as WFDB files under ``folder/wfdb`` and as a store ``folder/store``.

    Returns the record paths (without extension, for ``wfdb.rdsamp``) and the store's path. Reuses
    what an earlier call with the same arguments left in ``folder``.
    """
    folder = os.path.join(folder, f"{records}-records-{fs:g}hz-{seconds:g}s")
    root, store = os.path.join(folder, "wfdb"), os.path.join(folder, "store")
    os.makedirs(root, exist_ok=True)
    paths = []
    for i in range(records):
        name = f"syn{i:05d}"
        paths.append(os.path.join(root, name))
        if not os.path.exists(paths[-1] + ".hea"):
            signal = synthetic_ecg(seed=i, fs=fs, seconds=seconds).signal.T  # T × 12, mV
            wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                        p_signal=np.ascontiguousarray(signal), fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                        baseline=[0] * 12, write_dir=root)  # fmt: skip
    if not os.path.exists(os.path.join(store, "manifest.json")):
        prepare_store(WfdbFolderSource(root), store, PrepConfig(fs=fs), workers=1, log=lambda _: None)
    return paths, store
