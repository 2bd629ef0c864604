"""``coreecg demo``: the whole method end to end on built-in synthetic ECGs, in minutes on a laptop CPU.

1. generate a labelled synthetic 12-lead collection and prepare it as a store (``prepare synthetic``);
2. pretrain CoRe-ECG briefly (the ``cpu`` preset);
3. linear probe and fine-tune on the synthetic conditions, beside a random-init baseline;
4. write ``report.html``: reconstructions, embedding map, ROC curves, training curves, metrics.
Every stage resumes when the command is run again, so an interrupted demo continues.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from coreecg.evaluation.benchmark import BenchmarkConfig, MethodSpec, run_benchmark
from coreecg.evaluation.finetune import FinetuneConfig
from coreecg.prepare import prepare_store
from coreecg.preprocess import PrepConfig
from coreecg.pretrain.loop import pretrain
from coreecg.readers.synthetic import SyntheticSource
from coreecg.report.page import write_report

TASK = "condition"


@dataclass
class DemoConfig:
    records: int = 2000
    fs: float = 250.0  # generation rate; the store is at 100 Hz like PTB-XL's records100
    pretrain_steps: int = 200
    batch_size: int = 64
    finetune_epochs: int = 3
    finetune_batch_size: int = 64
    finetune_min_steps: int = 20  # fine-tuning steps between validations (and at least this many in all)
    fractions: tuple[float, ...] = (0.1, 1.0)
    finetune: bool = True
    seed: int = 0
    workers: int = os.cpu_count() or 1
    progress: bool = True


def pretrain_config(store: str, config: DemoConfig) -> dict:
    steps = config.pretrain_steps
    return {
        "model": {"preset": "cpu"},
        "data": {"store": store, "crop_seconds": 5.0},
        "train": {
            "steps": steps,
            "batch_size": config.batch_size,
            "warmup_steps": max(1, steps // 10),
            "seed": config.seed,
            "log_every": max(1, steps // 40),
            "checkpoint_every": max(1, steps // 4),
            "progress": config.progress,
        },
        "probe": {"label_set": TASK, "eval_every": max(1, steps // 4), "max_records": 400},
    }


def benchmark_config(store: str, encoder: str, config: DemoConfig) -> BenchmarkConfig:
    both = ["probe", "finetune"] if config.finetune else ["probe"]
    return BenchmarkConfig(
        store=store,
        tasks=[TASK],
        fractions=list(config.fractions),
        seeds=[config.seed],
        methods={
            "CoRe-ECG": MethodSpec(encoder=encoder, protocols=both),
            "random init": MethodSpec(random_init="cpu", crop_seconds=5.0, protocols=both),
        },
        bootstrap=500,
        finetune=FinetuneConfig(
            epochs=config.finetune_epochs,
            batch_size=config.finetune_batch_size,
            min_steps_per_eval=config.finetune_min_steps,
            patience=3,
        ),
    )


def run_demo(out: str, config: DemoConfig | None = None, log: Callable[[str], None] = print) -> dict:
    """Run every stage into ``out``; returns the paths and the headline validation figures."""
    config = config or DemoConfig()
    start = time.perf_counter()
    out = os.path.abspath(out)  # runs record where their store is; absolute, so reports work from anywhere
    store = os.path.join(out, "store")

    def stage(text: str) -> None:
        log(f"\n== {text} ({time.perf_counter() - start:.0f} s) ==")

    stage(f"1/4 generating {config.records} synthetic 12-lead ECGs and preparing the store")
    source = SyntheticSource(records=config.records, fs=config.fs, seconds=10.0, seed=config.seed)
    prepare_store(source, store, PrepConfig(), workers=config.workers, shard_size=500, log=log)
    stage(f"2/4 pretraining CoRe-ECG for {config.pretrain_steps} steps (cpu preset)")
    run = os.path.join(out, "pretrain")
    pretrain(pretrain_config(store, config), run, log=log)
    stage("3/4 linear probe and fine-tuning on the synthetic conditions, beside random init")
    results = run_benchmark(benchmark_config(store, run, config), os.path.join(out, "benchmark"), log=log)
    stage("4/4 writing the report")
    report = write_report(
        out, os.path.join(out, "report.html"), title="coreecg demo: synthetic 12-lead ECG", label_set=TASK, log=log
    )
    headline = {
        row: {column: stats["val"]["auroc"]["mean"] for column, stats in columns.items()}
        for row, columns in results["aggregate"].items()
    }
    log(f"\ndone in {time.perf_counter() - start:.0f} s")
    return {"report": report, "store": store, "pretrain": run, "validation_macro_auroc": headline}
