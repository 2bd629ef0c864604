"""The benchmark grid: methods × protocols × lead sets × tasks × label fractions × seeds, resumable.

Each grid cell (one method, protocol, lead set, task, fraction and seed) is fitted on train,
chosen on validation, and scored on validation (and once on test, if a test part is named). A
finished cell is a JSON file plus its probabilities under ``OUT/cells/``; a re-run skips it, so an
interrupted benchmark resumes where it stopped, and computes again a cell whose files are damaged.
``read_cell`` is the one reader of those files: report and compare name a damaged one. Pretraining
runs named by a method are trained once under ``OUT/pretrain/`` (resumed if interrupted) and shared
by every method that names the same config and overrides. Embeddings for probes are computed once
per encoder and lead set.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from coreecg.config import (
    SCHEMA_VERSION,
    ConfigError,
    apply_overrides,
    build,
    check_schema,
    describe_differences,
    read_yaml,
    to_dict,
)
from coreecg.dataset import Amplitude
from coreecg.evaluation.features import random_encoder, record_embeddings
from coreecg.evaluation.finetune import FinetuneConfig, finetune
from coreecg.evaluation.outcome import Outcome, summarize
from coreecg.evaluation.probe import DEFAULT_CS, probe_selection
from coreecg.evaluation.selection import Selection, select
from coreecg.evaluation.tables import write_tables
from coreecg.files import read_json, write_atomically, write_json
from coreecg.leads import parse_lead_list
from coreecg.metrics import bootstrap_intervals
from coreecg.model import EMBEDDING_FEATURES
from coreecg.pretrained import PretrainedEncoder, encoder_location, load_encoder
from coreecg.store import Store

PROTOCOLS = ("probe", "finetune")
ALL_LEADS = "all"
ROW_SEPARATOR = " · "  # between the parts of a row's name: "method · protocol[ · lead set]"


@dataclass
class MethodSpec:
    """Where a method's encoder comes from (exactly one of the three) and which protocols run on it."""

    encoder: str | None = None  # a saved encoder (folder or pretraining run folder)
    pretrain: str | None = None  # a pretraining YAML config, trained once under OUT/pretrain/
    overrides: list[str] = field(default_factory=list)  # key=value overrides of that config
    random_init: str | None = None  # an untrained encoder of this preset (the random-init baseline)
    crop_seconds: float = 5.0  # crop length of a random-init encoder (trained ones carry their own)
    scale_mv: float | None = None  # a random-init encoder's amplitude normalization (see data.scale_mv)
    amplitude_kept: float | None = None  # ... and how much amplitude it keeps (see data.amplitude_kept)
    amplitude_token: bool = False  # a random-init encoder with the amplitude token (model.amplitude_token)
    protocols: list[str] = field(default_factory=lambda: ["probe"])
    tasks: list[str] | None = None  # default: every task of the benchmark
    fractions: list[float] | None = None  # default: every fraction
    lead_sets: list[str] | None = None  # default: every lead set
    seeds: list[int] | None = None  # default: every seed (e.g. fewer for costly fine-tuning)


@dataclass
class ProbeSettings:
    cs: list[float] = field(default_factory=lambda: list(DEFAULT_CS))  # the C grid searched on validation
    # What the probe sees of each record (EMBEDDING_FEATURES): g plus its time statistics and their
    # change over time by default, which beat g alone on every PTB-XL task (see model.time_statistics).
    features: str = "g+time+change"


@dataclass
class BenchmarkConfig:
    store: str = ""
    tasks: list[str] = field(default_factory=list)
    fractions: list[float] = field(default_factory=lambda: [1.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    lead_sets: dict[str, str] = field(default_factory=lambda: {ALL_LEADS: ALL_LEADS})
    train: str | int | list[int] = "train"
    val: str | int | list[int] = "val"
    test: str | int | list[int] | None = None  # scored once per model after selection; null while developing
    bootstrap: int = 1000  # bootstrap replicates for the 95 % CIs
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def load_benchmark_config(path: str, overrides: list[str] | None = None) -> BenchmarkConfig:
    """The benchmark config in ``path`` with ``key=value`` overrides, checked."""
    config = build(BenchmarkConfig, apply_overrides(read_yaml(path), overrides or []))
    problems = []
    if not config.store:
        problems.append("store: name the labelled store to evaluate on")
    if not config.tasks:
        problems.append("tasks: name at least one label set")
    if not config.methods:
        problems.append("methods: name at least one method")
    for name, method in config.methods.items():
        sources = [s for s in (method.encoder, method.pretrain, method.random_init) if s]
        if len(sources) != 1:
            problems.append(f"methods.{name}: give exactly one of encoder, pretrain, random_init")
        random_only = (method.scale_mv, method.amplitude_kept, method.amplitude_token or None)
        if any(value is not None for value in random_only) and not method.random_init:
            problems.append(
                f"methods.{name}: scale_mv, amplitude_kept and amplitude_token are for random_init "
                "only (a trained encoder carries its own)"
            )
        try:
            Amplitude.from_options(method.scale_mv, method.amplitude_kept)
        except ValueError as error:
            problems.append(f"methods.{name}.{error}")
        unknown = [p for p in method.protocols if p not in PROTOCOLS]
        if unknown or not method.protocols:
            problems.append(f"methods.{name}.protocols: {method.protocols} (known: {', '.join(PROTOCOLS)})")
        for key, allowed in (
            ("tasks", config.tasks),
            ("fractions", config.fractions),
            ("lead_sets", list(config.lead_sets)),
            ("seeds", config.seeds),
        ):
            chosen = getattr(method, key)
            if chosen is not None and not set(chosen) <= set(allowed):
                problems.append(f"methods.{name}.{key}: {chosen} not all in the benchmark's {key} {allowed}")
    for name, leads in config.lead_sets.items():
        if leads != ALL_LEADS:
            try:
                parse_lead_list(leads)
            except ValueError as error:
                problems.append(f"lead_sets.{name}: {error}")
    if config.probe.features not in EMBEDDING_FEATURES:
        problems.append(f"probe.features: {config.probe.features!r} (known: {', '.join(EMBEDDING_FEATURES)})")
    if any(not 0 < f <= 1 for f in config.fractions):
        problems.append(f"fractions: each must be in (0, 1], got {config.fractions}")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return config


@dataclass(frozen=True)
class Cell:
    method: str
    protocol: str
    lead_set: str
    task: str
    fraction: float
    seed: int

    @property
    def row(self) -> str:
        parts = [self.method, self.protocol] + ([] if self.lead_set == ALL_LEADS else [self.lead_set])
        return ROW_SEPARATOR.join(parts)

    @property
    def column(self) -> str:
        return f"{self.task} {self.fraction:.0%}" if self.fraction >= 0.01 else f"{self.task} {self.fraction:.1%}"

    @property
    def name(self) -> str:
        return f"{self.method}__{self.protocol}__{self.lead_set}__{self.task}__f{self.fraction:g}__s{self.seed}"


CELL_ARRAYS = ("val_rows", "val", "thresholds")


def read_cell(folder: str, name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """A finished cell's summary and arrays from ``folder/cells/``, checked; ``ValueError`` naming the damaged
    file otherwise."""
    base = os.path.join(folder, "cells", name)
    summary = read_json(base + ".json")
    try:
        Cell(**summary["cell"])
        for part in [p for p in ("val", "test") if p in summary]:
            [float(summary[part][metric]) for metric in ("auroc", "auprc", "f1")]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{base}.json: not a benchmark cell summary ({type(error).__name__}: {error})") from None
    try:
        with np.load(base + ".npz") as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise ValueError(f"{base}.npz: missing (the cell's probabilities)") from None
    except Exception as error:  # zipfile, NumPy and OS errors alike: the file is damaged
        raise ValueError(f"{base}.npz: unreadable ({type(error).__name__}: {error})") from None
    missing = [key for key in CELL_ARRAYS if key not in arrays]
    if missing or len(arrays["val_rows"]) != len(arrays["val"]):
        raise ValueError(f"{base}.npz: not a cell's probabilities (lacks {missing} or its rows do not match)")
    return summary, arrays


def grid(config: BenchmarkConfig) -> list[Cell]:
    """Every cell, in the order they run (cheap probes before fine-tuning)."""
    cells = []
    for protocol in PROTOCOLS:
        for name, method in config.methods.items():
            if protocol not in method.protocols:
                continue
            for lead_set in method.lead_sets or list(config.lead_sets):
                for task in method.tasks or config.tasks:
                    for fraction in method.fractions or config.fractions:
                        seeds = method.seeds or config.seeds
                        cells.extend(Cell(name, protocol, lead_set, task, fraction, s) for s in seeds)
    return cells


class Benchmark:
    """Runs the grid into ``out``; every finished cell is kept and never recomputed."""

    def __init__(self, config: BenchmarkConfig, out: str, log: Callable[[str], None] = print):
        self.config, self.out, self.log = config, out, log
        self.store = Store(store_path(config))
        self.encoders: dict[str, PretrainedEncoder] = {}
        self.features: dict[tuple[str, str], dict[int, np.ndarray]] = {}
        self.probes: dict[tuple, Outcome] = {}
        os.makedirs(os.path.join(out, "cells"), exist_ok=True)

    def leads(self, lead_set: str) -> str | None:
        value = self.config.lead_sets[lead_set]
        return None if value == ALL_LEADS else value

    def encoder(self, name: str, seed: int) -> PretrainedEncoder:
        method = self.config.methods[name]
        if method.random_init:
            amplitude = Amplitude.from_options(method.scale_mv, method.amplitude_kept)
            return random_encoder(
                method.random_init,
                self.store,
                method.crop_seconds,
                seed,
                amplitude=amplitude,
                amplitude_token=method.amplitude_token,
            )
        if name not in self.encoders:
            path = method.encoder
            if method.pretrain:
                path = self.run_pretraining(method)
            self.encoders[name] = load_encoder(path)
        return self.encoders[name]

    def run_pretraining(self, method: MethodSpec) -> str:
        from coreecg.pretrain.loop import pretrain

        config = pretraining_config(method, self.store.path)
        run_dir = os.path.join(self.out, "pretrain", pretrain_key(method, config))
        if not os.path.isfile(os.path.join(run_dir, "summary.json")):
            self.log(f"pretraining {method.pretrain} {' '.join(method.overrides)} into {run_dir}")
            result = pretrain(config, run_dir, log=self.log)
            if not result.finished:
                raise RuntimeError(f"{run_dir}: pretraining stopped before its last step")
        return run_dir

    def selection(self, cell: Cell) -> Selection:
        c = self.config
        return select(self.store, cell.task, c.train, c.val, c.test, cell.fraction, cell.seed)

    def embed_function(self, cell: Cell) -> Callable[[np.ndarray], np.ndarray]:
        """Cached record embeddings for the cell's encoder and lead set (random init: one fixed seed-0 encoder)."""
        key = (cell.method, cell.lead_set)
        cache = self.features.setdefault(key, {})

        def embed(rows: np.ndarray) -> np.ndarray:
            missing = np.array([r for r in rows.tolist() if r not in cache], dtype=np.int64)
            if len(missing):
                start = time.perf_counter()
                values = record_embeddings(
                    self.encoder(cell.method, 0),
                    self.store,
                    missing,
                    self.leads(cell.lead_set),
                    features=self.config.probe.features,
                )
                cache.update(zip(missing.tolist(), values, strict=True))
                self.log(f"  embedded {len(missing)} records in {time.perf_counter() - start:.0f} s")
            return np.stack([cache[r] for r in rows.tolist()])

        return embed

    def run_cell(self, cell: Cell) -> dict:
        selection = self.selection(cell)
        if cell.protocol == "probe":
            # A probe is deterministic given its training records: seeds that draw the same records (all of
            # them at 100 %) share one fit instead of repeating it.
            key = (cell.method, cell.lead_set, cell.task, hashlib.sha256(selection.train.rows.tobytes()).hexdigest())
            if key not in self.probes:
                self.probes[key] = probe_selection(self.embed_function(cell), selection, tuple(self.config.probe.cs))
            outcome = self.probes[key]
        else:
            finetune_config = FinetuneConfig(**{**to_dict(self.config.finetune), "seed": cell.seed})
            outcome = finetune(
                self.encoder(cell.method, cell.seed),
                self.store,
                selection,
                os.path.join(self.out, "models", cell.name),
                finetune_config,
                self.leads(cell.lead_set),
                log=lambda text: self.log("  " + text),
            )
        return self.save_cell(cell, selection, outcome)

    def save_cell(self, cell: Cell, selection: Selection, outcome: Outcome) -> dict:
        """Probabilities first, then the JSON (written last: its presence means the cell is complete)."""
        base = os.path.join(self.out, "cells", cell.name)
        arrays = {"val_rows": selection.val.rows, "val": outcome.val_probabilities, "thresholds": outcome.thresholds}
        if outcome.test_probabilities is not None:
            arrays |= {"test_rows": selection.test.rows, "test": outcome.test_probabilities}
        write_atomically(base + ".npz", lambda temp: np.savez(temp, **arrays))
        summary = {"cell": cell.__dict__, **summarize(selection, outcome, self.config.bootstrap)}
        write_json(base + ".json", summary)
        return summary

    def run(self) -> dict:
        cells = grid(self.config)
        done = 0
        for i, cell in enumerate(cells, 1):
            path = os.path.join(self.out, "cells", cell.name + ".json")
            if os.path.isfile(path):
                try:
                    read_cell(self.out, cell.name)
                    done += 1
                    continue
                except ValueError as error:
                    self.log(f"{error}; computing the cell again")
            start = time.perf_counter()
            self.log(f"[{i}/{len(cells)}] {cell.row} | {cell.column} | seed {cell.seed}")
            summary = self.run_cell(cell)
            self.log(f"  val macro AUROC {summary['val']['auroc']:.4f} in {time.perf_counter() - start:.0f} s")
        if done:
            self.log(f"{done} of {len(cells)} cells were already finished and were reused")
        return self.write_results(cells)

    def write_results(self, cells: list[Cell]) -> dict:
        results = {"config": to_dict(self.config), "store": self.store.path, "cells": {}, "aggregate": {}}
        groups: dict[tuple[str, str], list[Cell]] = {}
        for cell in cells:
            results["cells"][cell.name] = read_cell(self.out, cell.name)[0]
            groups.setdefault((cell.row, cell.column), []).append(cell)
        for (row, column), members in groups.items():
            results["aggregate"].setdefault(row, {})[column] = self.aggregate(members, results["cells"])
        write_json(os.path.join(self.out, "results.json"), results)
        write_tables(results, self.out, has_test=self.config.test is not None)
        return results

    def aggregate(self, members: list[Cell], summaries: dict) -> dict:
        """Mean ± std over seeds of each macro metric, and bootstrap CIs of the seed mean (paired records)."""
        out = {"seeds": [c.seed for c in members], "classes_excluded": summaries[members[0].name]["val"]["excluded"]}
        parts = ["val"] + (["test"] if self.config.test is not None else [])
        arrays = [read_cell(self.out, c.name)[1] for c in members]
        matrix = self.store.label_set(members[0].task).matrix
        for part in parts:
            labels = matrix[arrays[0][f"{part}_rows"]]  # every seed is scored on the same records
            stats: dict = {}
            for metric in ("auroc", "auprc", "f1"):
                values = [summaries[c.name][part][metric] for c in members]
                stats[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
            per_class_names = list(summaries[members[0].name][part]["per_class"])
            stats["per_class_auroc"] = {
                name: float(np.nanmean([summaries[c.name][part]["per_class"][name]["auroc"] for c in members]))
                for name in per_class_names
            }
            ci = bootstrap_intervals(
                labels, [a[part] for a in arrays], [a["thresholds"] for a in arrays], self.config.bootstrap
            )
            for metric, bounds in ci.items():
                stats[metric]["ci95"] = list(bounds)
            out[part] = stats
        return out


def store_path(config: BenchmarkConfig) -> str:
    return os.path.abspath(os.path.expanduser(config.store))


def pretraining_config(method: MethodSpec, store: str):
    """The resolved config a method's pretraining runs with: its YAML and overrides, on ``store`` by default."""
    from coreecg.pretrain.config import load_pretrain_config

    overrides = list(method.overrides)
    named = read_yaml(method.pretrain).get("data", {}).get("store") or any(
        o.startswith("data.store=") for o in overrides
    )
    if not named:  # pretrain on the benchmark's own store (its train split, labels unused)
        overrides.append(f"data.store={json.dumps(store)}")
    return load_pretrain_config(method.pretrain, overrides)


def pretrain_key(method: MethodSpec, resolved_config) -> str:
    """Runs are keyed by the resolved config, so equal requests share one run and a changed default starts a new one."""
    resolved = json.dumps(to_dict(resolved_config), sort_keys=True)
    stem = os.path.splitext(os.path.basename(method.pretrain))[0]
    return f"{stem}-{hashlib.sha256(resolved.encode()).hexdigest()[:10]}"


def encoder_identities(config: BenchmarkConfig) -> dict[str, str]:
    """What each method's encoder is: its resolved pretraining config's key, a path, or a random preset.

    Kept in OUT/config.json, so that editing a pretraining YAML (or a default it relies on) between
    runs is caught: the benchmark file is unchanged, but its finished cells came from another encoder.
    """
    identities = {}
    for name, method in config.methods.items():
        if method.pretrain:
            identities[name] = f"pretrain {pretrain_key(method, pretraining_config(method, store_path(config)))}"
        elif method.encoder:
            identities[name] = f"encoder {os.path.abspath(encoder_location(method.encoder))}"
        else:
            token = " amplitude_token" if method.amplitude_token else ""
            identities[name] = f"random_init {method.random_init}{token}"
    return identities


GROWABLE = ("tasks", "fractions", "seeds", "methods", "lead_sets", "encoders")  # may gain entries between runs
METHOD_SCOPE = ("protocols", "tasks", "fractions", "lead_sets", "seeds")  # which cells a method runs, not how


def changes_that_stale_cells(old: dict, new: dict) -> list[str]:
    """Changes between two configs that would make finished cells wrong to reuse.

    Adding tasks, fractions, seeds, lead sets or methods only adds cells; changing how a cell is
    computed (store, parts, probe or fine-tune settings, a method's encoder) does not.
    """
    changed = describe_differences(
        {k: v for k, v in old.items() if k not in GROWABLE}, {k: v for k, v in new.items() if k not in GROWABLE}
    )
    for name in set(old.get("lead_sets", {})) & set(new.get("lead_sets", {})):
        if old["lead_sets"][name] != new["lead_sets"][name]:
            changed.append(f"lead_sets.{name}: {old['lead_sets'][name]!r} -> {new['lead_sets'][name]!r}")
    for name in set(old.get("encoders", {})) & set(new.get("encoders", {})):
        if old["encoders"][name] != new["encoders"][name]:
            changed.append(f"methods.{name}'s encoder: {old['encoders'][name]} -> {new['encoders'][name]}")
    for name in set(old.get("methods", {})) & set(new.get("methods", {})):
        a = {k: v for k, v in old["methods"][name].items() if k not in METHOD_SCOPE}
        b = {k: v for k, v in new["methods"][name].items() if k not in METHOD_SCOPE}
        changed += describe_differences(a, b, f"methods.{name}.")
    return changed


def run_benchmark(config: BenchmarkConfig, out: str, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the grid into ``out``; refuses to mix cells computed under different settings."""
    config_path = os.path.join(out, "config.json")
    settings = {"schema": SCHEMA_VERSION} | to_dict(config) | {"encoders": encoder_identities(config)}
    if os.path.isfile(config_path):
        old = read_json(config_path)
        if not isinstance(old, dict):
            raise ValueError(f"{config_path}: not a benchmark's settings")
        check_schema(old.get("schema"), config_path)
        changed = changes_that_stale_cells(old, settings)
        if changed:
            raise ConfigError(
                f"{out} holds cells computed with other settings ({'; '.join(changed)}); use a new --out folder"
            )
    write_json(config_path, settings)
    return Benchmark(config, out, log).run()
