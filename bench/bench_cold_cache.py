"""Training input on a cold page cache: random crops from a store that is not in memory, with and without prefetch.

A training dataset asks the kernel to read its shards ahead (``Store.prefetch``, POSIX_FADV_WILLNEED)
because random crops through a memmap on a cold cache are random page faults. This measures the
time to the first batches of the real loader (``StoreDataset.loader``, two-view-ready crops, no
model) after the store's pages are evicted (POSIX_FADV_DONTNEED), with the hint and without it, and
on a warm cache for scale. Each measurement is a fresh process, so no process still maps the pages;
the modes alternate so drift hits them alike. Eviction needs that no other process maps the store.

    python bench/bench_cold_cache.py --store ~/stores/ptbxl100 --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inputs import synthetic_inputs
from report import publish, table

from coreecg.dataset import StoreDataset
from coreecg.store import Store

MODES = ("cold, no prefetch", "cold, prefetch", "warm")


def evict(store: Store) -> None:
    for name in store.shard_names:
        descriptor = os.open(os.path.join(store.path, "shards", name, "signals.npy"), os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def measure(store_path: str, mode: str, batch: int, batches: int) -> dict:
    """Seconds to the first batch and to ``batches`` batches of 5 s training crops."""
    store = Store(store_path)
    if mode != "warm":
        evict(store)
    if mode == "cold, no prefetch":
        store.prefetch = lambda *args, **kwargs: False  # the dataset's hint becomes a no-op
    start = time.perf_counter()
    splits = ["train"] if "train" in set(store.split) else None  # synthetic stores have no splits
    dataset = StoreDataset(store, crop_seconds=min(5.0, store.config.segment_samples / store.fs), splits=splits)
    times = []
    for i, _ in enumerate(dataset.loader(batch, drop_last=True)):
        times.append(time.perf_counter() - start)
        if i + 1 == batches:
            break
    return {"first": times[0], "all": times[-1], "batches": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="a prepared store (default: synthetic records)")
    parser.add_argument("--records", type=int, default=512, help="synthetic records (default input)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "coreecg-bench-inputs"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=50, help="batches timed per measurement")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--append")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    store = args.store or synthetic_inputs(Path(args.work), args.records)
    if args.one:
        print(json.dumps(measure(store, args.one, args.batch, args.batches)))
        return
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            command = [
                sys.executable,
                __file__,
                "--store",
                store,
                "--batch",
                str(args.batch),
                "--batches",
                str(args.batches),
                "--one",
                mode,
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[mode].append(json.loads(output.strip().splitlines()[-1]))
            print(mode, results[mode][-1], flush=True)
    size = sum(os.path.getsize(os.path.join(store, "shards", n, "signals.npy")) for n in Store(store).shard_names)
    rows = []
    for mode, runs in results.items():
        best = min(runs, key=lambda r: r["all"])
        rate = best["batches"] * args.batch / best["all"]
        rows.append(
            [
                mode,
                f"{best['first']:.2f}",
                f"{best['all']:.1f}",
                f"{rate:,.0f}",
                " / ".join(f"{r['all']:.1f}" for r in runs),
            ]
        )
    body = (
        f"Store `{store}` ({size / 2**20:,.0f} MiB of signals); {args.batches} batches of {args.batch} "
        f"training crops; best of {args.repeats} (all runs in the last column).\n\n"
    )
    body += table(["page cache", "first batch (s)", f"{args.batches} batches (s)", "samples/s", "runs (s)"], rows)
    publish("Training input on a cold page cache", body, args.append)


if __name__ == "__main__":
    main()
