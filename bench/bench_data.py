"""Data throughput and data waiting: the input pipeline alone, and inside a real training run, against the reference.

Pipeline alone (two views per sample, ready for the model, no model):
- coreecg: ``StoreDataset.loader`` (one vectorized gather per batch from the memory-mapped store),
  then ``make_views`` on the training device (crops, FDA, STDM batched in torch);
- reference: ``bench/reference.py``'s dataset: ``wfdb.rdsamp`` per item and both views made per item
  with NumPy, in DataLoader worker processes (and in-process, for comparison).
Training run (tiny preset by default): ``coreecg pretrain`` itself, which logs ``data_wait`` (share of
wall time spent blocked on the next batch) and samples/s; the reference loop (workers + plain step)
timed the same way. Each run is a fresh process. Memory: the peak proportional set size of the
whole process tree (workers included, shared pages counted once), sampled every 0.2 s; the main
process's peak RSS (``VmHWM``); and at the end its anonymous memory (``RssAnon``) apart from mapped
store pages (``RssFile``, page cache the kernel can drop), the only part that can grow with the store.

    python bench/bench_data.py --append BENCHMARKS.md                        # synthetic records
    python bench/bench_data.py --store ~/stores/ptbxl100 --wfdb-root ~/data/ptb-xl --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inputs import store_paths, synthetic_inputs
from reference import PlainCoReECG, ViewSettings, WfdbViewsDataset, batch_views, plain_step
from report import publish, table

from coreecg.dataset import StoreDataset
from coreecg.optim import parameter_groups
from coreecg.pretrain.config import resolve
from coreecg.pretrain.loop import pretrain
from coreecg.pretrain.objective import make_views
from coreecg.store import Store


def memory() -> dict:
    """Peak and current resident memory of this process, GiB (Linux /proc)."""
    values = {}
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0]) / 2**20
    return values


def forever(loader):
    """Batches of ``loader``, epoch after epoch."""
    while True:
        yield from loader


def pipeline_rate(batches, make, seconds: float) -> float:
    """Samples/s of iterating ``batches`` and turning each into views with ``make``, for ``seconds``."""
    iterator = forever(batches)
    make(next(iterator))  # warm-up: worker start-up, page cache
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += make(next(iterator))
    return done / (time.perf_counter() - start)


def config_for(store: str, preset: str, batch: int, steps: int, workers: int):
    splits = ["train"] if "train" in set(Store(store).records["split"].astype(str)) else None  # synthetic: none
    data = {"store": store, "num_workers": workers, "splits": splits}
    return resolve(
        {
            "data": data,
            "model": {"preset": preset, "amplitude_token": False},  # as the reference
            "train": {
                "batch_size": batch,
                "steps": steps,
                "log_every": steps,
                "progress": False,
                "checkpoint_every": steps,
                "warmup_steps": 1,
            },
        }
    )


def train_coreecg(store: str, preset: str, batch: int, steps: int, workers: int) -> dict:
    """A real ``pretrain`` run (fresh folder); samples/s and data wait of its last ``steps - warmup`` steps."""
    warm = 3
    config = config_for(store, preset, batch, steps + warm, workers)
    with tempfile.TemporaryDirectory() as run_dir:
        pretrain(config, run_dir, stop_at=warm, log=lambda _: None)
        result = pretrain(config, run_dir, log=lambda _: None)  # resumes: a fresh loader, timed steps only
    return {"samples_per_s": result.last["samples_per_s"], "data_wait": result.last["data_wait"], **memory()}


def train_reference(wfdb_root: str | None, store: str, preset: str, batch: int, steps: int, workers: int) -> dict:
    """The reference loop: per-item WFDB + NumPy views in workers, plain model step; same timing as coreecg."""
    paths = store_paths(Store(store), wfdb_root)
    config = config_for(store, preset, batch, steps, workers)
    torch.manual_seed(0)
    model = PlainCoReECG.like(config)
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.05), lr=1e-4)
    dataset = WfdbViewsDataset(paths, ViewSettings.like(config, Store(store).fs))
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers, persistent_workers=workers > 0
    )
    iterator = forever(loader)
    for _ in range(3):
        plain_step(model, optimizer, *batch_views(next(iterator)))
    waited, start = 0.0, time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        item = next(iterator)
        waited += time.perf_counter() - t
        plain_step(model, optimizer, *batch_views(item))
    elapsed = time.perf_counter() - start
    return {"samples_per_s": batch * steps / elapsed, "data_wait": waited / elapsed, **memory()}


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (DataLoader workers included)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def tree_pss(pid: int) -> float:
    """Proportional set size of the process tree, GiB: shared pages counted once across processes."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 2**20


def run_isolated(kind: str, **kwargs) -> dict:
    """One training run in a fresh process, sampling its process tree's memory every 0.2 s."""
    command = [sys.executable, __file__, "--one", json.dumps({"kind": kind, **kwargs})]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, tree_pss(process.pid))
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise SystemExit(f"{kind} run failed:\n{err.read()[-3000:]}")
        return {**json.loads(out.read().strip().splitlines()[-1]), "tree_pss": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="a prepared store (default: synthetic records)")
    parser.add_argument("--wfdb-root", help="where the store's WFDB records are on this machine")
    parser.add_argument("--records", type=int, default=512, help="synthetic records (default input)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "coreecg-bench-inputs"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", default="tiny", help="model of the training runs")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per pipeline measurement")
    parser.add_argument("--append")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        job = json.loads(args.one)
        kind = job.pop("kind")
        print(json.dumps(train_coreecg(**job) if kind == "coreecg" else train_reference(**job)))
        return
    if args.store:
        store_path, source = args.store, f"store {args.store}"
    else:
        store_path = synthetic_inputs(args.work, args.records)
        source = f"{args.records} synthetic 10 s records at 100 Hz"
    store = Store(store_path)
    paths = store_paths(store, args.wfdb_root)
    config = config_for(store_path, args.preset, args.batch, 1, 0)
    dataset = StoreDataset(store, mode="train", splits=config.data.splits, folds=config.data.folds)

    def views_from_store(batch: dict) -> int:
        make_views(batch["signal"], batch["lead_mask"], config, store.fs)
        return len(batch["signal"])

    reference = WfdbViewsDataset(paths, ViewSettings.like(config, store.fs))

    def ready_views(batch: dict) -> int:
        return len(batch["lead_mask"])

    pipelines = [("coreecg: store loader + make_views, 1 process", dataset.loader(args.batch), views_from_store)]
    pipelines.append(
        (
            f"coreecg: store loader with {args.workers} workers + make_views",
            dataset.loader(args.batch, num_workers=args.workers),
            views_from_store,
        )
    )
    pipelines.append(
        (
            "reference: rdsamp + NumPy views per item, 1 process",
            DataLoader(reference, batch_size=args.batch, shuffle=True),
            ready_views,
        )
    )
    pipelines.append(
        (
            f"reference: rdsamp + NumPy views per item, {args.workers} workers",
            DataLoader(
                reference, batch_size=args.batch, shuffle=True, num_workers=args.workers, persistent_workers=True
            ),
            ready_views,
        )
    )
    rates = [(name, pipeline_rate(batches, make, args.seconds)) for name, batches, make in pipelines]
    base = rates[-1][1]
    rows = [[name, f"{rate:,.0f}", f"{rate / base:.1f}×"] for name, rate in rates]
    body = (
        f"Input: {source}; {len(dataset)} training segments. Batch {args.batch}, two 5 s views per sample "
        "(crop, FDA, STDM).\n\n" + table(["pipeline (no model)", "samples/s", "vs reference with workers"], rows)
    )
    common = {"store": store_path, "preset": args.preset, "batch": args.batch, "steps": args.steps}
    runs = [(f"coreecg pretrain, {w} workers", run_isolated("coreecg", workers=w, **common)) for w in (0, args.workers)]
    runs.append(
        (
            f"reference loop, {args.workers} workers",
            run_isolated("reference", wfdb_root=args.wfdb_root, workers=args.workers, **common),
        )
    )
    base = runs[-1][1]["samples_per_s"]
    rows = [
        [
            name,
            f"{r['samples_per_s']:.1f}",
            f"{r['samples_per_s'] / base:.2f}×",
            f"{100 * r['data_wait']:.1f} %",
            f"{r['tree_pss']:.2f}",
            f"{r['VmHWM']:.2f}",
            f"{r['RssAnon']:.2f}",
            f"{r['RssFile']:.2f}",
        ]
        for name, r in runs
    ]
    body += (
        f"\n\nTraining runs, {args.preset} preset, batch {args.batch}, {args.steps} timed steps after 3 warm-up "
        "steps, fp32, each in a fresh process:\n\n"
    )
    body += table(
        [
            "run",
            "samples/s",
            "vs reference",
            "data wait",
            "peak PSS of all processes GiB",
            "main process peak RSS GiB",
            "RssAnon GiB at end",
            "RssFile GiB at end",
        ],
        rows,
    )
    publish(f"Data throughput and data waiting: {source}", body, args.append)


if __name__ == "__main__":
    main()
