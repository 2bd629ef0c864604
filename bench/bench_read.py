"""Store read throughput against per-item WFDB reading, measured in the same run on the same records.

Each method delivers random 2.5 s 12-lead crops of the same records, normalized the same way:
- store, per item: ``dataset[i]`` one at a time, one process;
- store, batched: ``dataset.loader(256)`` (one vectorized gather per batch), one process;
- store, standard ``DataLoader(dataset, batch_size=256)`` (batch gathered via ``__getitems__``);
- store, batched with workers: the same fast path with DataLoader worker processes;
- WFDB per item: ``wfdb.rdsamp`` of the record, then the same crop and normalization (the usual
  "read the file in __getitem__" dataset, without even the band-pass the store already applied).
Page cache is warm for both (each method reads once before timing).

    python bench/bench_read.py STORE RECORDS_ROOT --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import wfdb
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inputs import store_paths
from report import publish, table

from coreecg.dataset import StoreDataset
from coreecg.store import Store


def rate(run, seconds: float) -> float:
    """Items per second of ``run`` (returns items done), repeated for at least ``seconds``."""
    run()  # warm-up: page cache, worker start-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += run()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("records_root", help="the folder the store was prepared from, here (for wfdb.rdsamp)")
    parser.add_argument("--crop-seconds", type=float, default=2.5)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--append")
    args = parser.parse_args()
    store = Store(args.store)
    dataset = StoreDataset(store, crop_seconds=args.crop_seconds)
    crop = dataset.crop
    n = len(dataset)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)

    def per_item() -> int:
        for i in rng.integers(0, n, 2000):
            dataset[int(i)]
        return 2000

    def batched() -> int:
        count = 0
        for batch in dataset.loader(256):
            count += len(batch["signal"])
            if count >= 20_000:
                break
        return count

    standard = DataLoader(dataset, batch_size=256, shuffle=True)

    def standard_loader() -> int:
        count = 0
        for batch in standard:
            count += len(batch["signal"])
            if count >= 20_000:
                break
        return count

    loader = dataset.loader(256, num_workers=args.workers)

    def with_workers() -> int:
        count = 0
        for batch in loader:
            count += len(batch["signal"])
        return count

    paths = store_paths(store, args.records_root)

    def wfdb_per_item() -> int:
        for i in rng.integers(0, len(paths), 200):
            signal, _ = wfdb.rdsamp(paths[i])
            start = int(rng.integers(0, max(signal.shape[0] - crop, 0) + 1))
            x = signal[start : start + crop].T.astype(np.float32)
            x = (x - x.mean(axis=1, keepdims=True)) / (x.std() + 1e-6)
            torch.from_numpy(x)
        return 200

    results = [
        ("store, per item (1 process)", rate(per_item, args.seconds)),
        ("store, batched (1 process)", rate(batched, args.seconds)),
        ("store, standard DataLoader(batch_size=256) (1 process)", rate(standard_loader, args.seconds)),
        (f"store, batched ({args.workers} workers)", rate(with_workers, args.seconds)),
        ("wfdb.rdsamp per item (1 process)", rate(wfdb_per_item, args.seconds)),
    ]
    baseline = results[-1][1]
    rows = [[name, f"{value:,.0f}", f"{value / baseline:.0f}×"] for name, value in results]
    body = (
        f"{store.n_records} records, {len(dataset)} segments, random {args.crop_seconds:g} s 12-lead crops "
        f"at {store.fs:g} Hz.\n\n" + table(["method", "crops/s", "vs wfdb"], rows)
    )
    publish(f"Store read throughput: {Path(args.store).name}", body, args.append)


if __name__ == "__main__":
    main()
