"""The pretraining loop: one process or many (``torchrun``), CPU or GPU, resumable exactly.

A run folder holds::

    config.yaml        the resolved config (what actually ran)
    metrics.jsonl      one JSON object per logged step / evaluation (rank 0)
    tensorboard/       the same scalars for TensorBoard
    checkpoint.safetensors  full training state: weights, optimizer, step, sampler position, RNG of every
                       rank (safetensors + JSON, never a pickle: see ``coreecg.state_file``)
    encoder/           model.safetensors + config.json, for ``coreecg.load_encoder``
    summary.json       written when the run finishes

An interrupted run (Ctrl-C, a killed job, ``stop_at``) resumes from its checkpoint when the same
command is run again, and continues with exactly the batches, masks and learning rates the
uninterrupted run would have used. Ctrl-C is taken between steps (the step under way finishes, then
the state is saved), so the saved state is never part-way into a step; a second Ctrl-C stops at once
and keeps the last checkpoint. A non-finite loss stops the run before the optimizer applies it, and
no checkpoint or encoder with non-finite weights is ever written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from coreecg.config import ConfigError, check_schema, describe_differences, to_dict
from coreecg.dataset import StoreDataset, concat_datasets, windows_to_cover
from coreecg.distributed import Context, all_reduce_mean, init_from_environment
from coreecg.errors import TrainingError
from coreecg.files import write_json, write_text
from coreecg.optim import parameter_groups, warmup_cosine
from coreecg.pretrain.config import PretrainConfig, resolve
from coreecg.pretrain.objective import CoReECG, make_views
from coreecg.pretrain.online_probe import OnlineProbe, validation_subset
from coreecg.pretrain.sampler import EpochBatches
from coreecg.pretrained import save_encoder
from coreecg.state_file import CONTENT_ERRORS, load_state, refuse_pickled, save_state, unusable
from coreecg.store import Store, StoreError

CHECKPOINT = "checkpoint.safetensors"
PICKLED_CHECKPOINT = "checkpoint.pt"  # what earlier versions wrote; refused, never unpickled
# Keys that may change when a run is resumed: they do not change what is computed.
RESUMABLE_CHANGES = (
    "train.progress",
    "train.log_every",
    "train.checkpoint_every",
    "data.num_workers",
    "train.threads",
    "probe.eval_every",
)


@dataclass
class RunResult:
    steps: int
    finished: bool
    last: dict  # the last logged metrics


def learning_rate(step: int, config: PretrainConfig) -> float:
    """Linear warmup to ``train.lr``, then cosine decay to ``train.min_lr`` at ``train.steps``."""
    t = config.train
    return warmup_cosine(step, t.steps, t.warmup_steps, t.lr, t.min_lr)


def resolve_device(name: str, context: Context) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{context.local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device {name!r}: CUDA is not available on this machine")
    return torch.device(name)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather_objects(value, context: Context) -> list:
    if not context.distributed:
        return [value]
    out = [None] * context.world_size
    torch.distributed.all_gather_object(out, value)
    return out


class Trainer:
    """Builds everything from a config, then runs steps; ``run`` is the whole job."""

    def __init__(self, config: PretrainConfig, run_dir: str, log: Callable[[str], None] = print):
        self.config, self.run_dir, self.log = config, run_dir, log
        t = config.train
        use_cuda = t.device.startswith("cuda") or (t.device == "auto" and torch.cuda.is_available())
        self.context = init_from_environment(use_cuda)
        self.device = resolve_device(t.device, self.context)
        precision = t.precision if t.precision != "auto" else ("bf16" if self.device.type == "cuda" else "fp32")
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.precision = precision
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)  # the same initial weights on every rank
        self.stores = [Store(path) for path in config.stores]
        datasets = [
            StoreDataset(
                s, mode="train", folds=config.data.folds, splits=config.data.splits, amplitude=config.data.amplitude()
            )
            for s in self.stores
        ]
        self.dataset = datasets[0] if len(datasets) == 1 else concat_datasets(datasets)
        self.fs = self.stores[0].fs
        segment_seconds = self.stores[0].config.segment_seconds
        if config.data.crop_seconds > segment_seconds:
            raise ConfigError(
                f"data.crop_seconds {config.data.crop_seconds} exceeds the store's {segment_seconds} s segments"
            )
        if round(config.data.crop_seconds * self.fs) < config.model.patch:
            raise ConfigError(f"data.crop_seconds {config.data.crop_seconds} is shorter than one patch")
        self.model = CoReECG(config).to(self.device)
        self.ddp = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.context.distributed
            else self.model
        )
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, t.weight_decay), lr=t.lr, betas=tuple(t.betas), fused=fused
        )
        self.batches = EpochBatches(len(self.dataset), t.batch_size, t.seed, self.context.rank, self.context.world_size)
        self.probe, self.probe_labels, self.probe_data = None, None, None
        if config.probe.label_set:
            self._build_probe()
        torch.manual_seed(t.seed + 1_000 * self.context.rank)  # each rank draws its own crops, FDA and masks
        self.step = 0

    def _build_probe(self) -> None:
        config = self.config
        if len(self.stores) != 1:
            raise ConfigError("probe.label_set needs a single store in data.store")
        store = self.stores[0]
        if config.probe.label_set not in store.label_set_names:
            raise ConfigError(
                f"probe.label_set {config.probe.label_set!r}: {store.path} has label sets "
                f"{', '.join(store.label_set_names) or '(none)'}"
            )
        labels = store.label_set(config.probe.label_set)
        self.probe_labels = (torch.from_numpy(labels.matrix.astype(np.float32)), torch.from_numpy(labels.labelled))
        self.probe = OnlineProbe(self.model.encoder.dim, labels.classes, config.probe.lr).to(self.device)
        try:
            val = StoreDataset(
                store,
                mode="eval",
                crop_seconds=config.data.crop_seconds,
                windows=windows_to_cover(store.config.segment_seconds, config.data.crop_seconds),
                label_set=config.probe.label_set,
                splits=config.probe.splits,
                amplitude=config.data.amplitude(),
            )
        except StoreError as error:
            raise ConfigError(f"probe.splits {config.probe.splits}: {error}") from error
        self.probe_data = validation_subset(val, config.probe.max_records, config.train.seed)

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.run_dir, CHECKPOINT)

    def save(self) -> None:
        rng = _gather_objects(_rng_state(), self.context)  # every rank's streams, for an exact resume
        if not self.context.is_main:
            return
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise TrainingError(
                f"step {self.step}: the weights are no longer finite; nothing was written, "
                f"the last good checkpoint is {self.checkpoint_path}"
            )
        state = {
            "step": self.step,
            "world_size": self.context.world_size,
            "config": to_dict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "probe": None
            if self.probe is None
            else {"model": self.probe.state_dict(), "optimizer": self.probe.optimizer.state_dict()},
            "rng": rng,
        }
        save_state(self.checkpoint_path, state)
        info = {
            "steps": self.step,
            "objective": self.config.objective.preset,
            "stores": self.config.stores,
            "store_hash": self.stores[0].config_hash,
        }
        save_encoder(
            self.model.encoder,
            os.path.join(self.run_dir, "encoder"),
            self.stores[0].config,
            self.config.data.crop_seconds,
            info,
            self.config.data.amplitude(),
        )

    def resume(self) -> bool:
        """Load the checkpoint if the run folder has one; refuses a checkpoint of a different config."""
        refuse_pickled(os.path.join(self.run_dir, PICKLED_CHECKPOINT), CHECKPOINT)
        if not os.path.isfile(self.checkpoint_path):
            return False
        state = load_state(self.checkpoint_path)
        try:
            return self._restore(state)
        except CONTENT_ERRORS as error:
            raise unusable(self.checkpoint_path, "checkpoint of this run", error) from None

    def _restore(self, state: dict) -> bool:
        check_schema(state["config"].get("schema"), self.checkpoint_path)
        changed = [
            d
            for d in describe_differences(state["config"], to_dict(self.config))
            if not d.startswith(RESUMABLE_CHANGES)
        ]
        if changed:
            raise ConfigError(
                f"{self.run_dir} holds a run with a different config ({'; '.join(changed)}); "
                "use a new --out folder, or the same config to resume"
            )
        if state["world_size"] != self.context.world_size:
            raise ConfigError(
                f"{self.run_dir} was trained with {state['world_size']} process(es); "
                f"resume it with the same number (now {self.context.world_size})"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.probe is not None and state["probe"] is not None:
            self.probe.load_state_dict(state["probe"]["model"])
            self.probe.optimizer.load_state_dict(state["probe"]["optimizer"])
        _set_rng_state(state["rng"][self.context.rank])
        self.step = state["step"]
        return True

    # -- the loop ------------------------------------------------------------------------------
    def _loader(self):
        self.batches.start = self.batches.position_after(self.step * self.config.train.accumulate)
        workers = self.config.data.num_workers
        # Worker seeds come from this generator, not the global RNG, so creating the iterator on resume
        # does not shift the stream that crops, FDA and masks draw from.
        seeded = torch.Generator().manual_seed(self.config.train.seed + self.step)
        if isinstance(self.dataset, StoreDataset):  # fast path: one vectorized gather per batch
            loader = DataLoader(
                self.dataset,
                sampler=self.batches,
                batch_size=None,
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0,
                generator=seeded,
            )
        else:
            loader = DataLoader(
                self.dataset,
                batch_sampler=self.batches,
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0,
                generator=seeded,
            )
        return iter(loader)

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        """One optimizer step over ``train.accumulate`` micro-batches; returns detached losses."""
        t = self.config.train
        lr = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        totals: dict[str, torch.Tensor] = {}
        for micro in range(t.accumulate):
            batch = next(batches)
            signal = batch["signal"].to(self.device, non_blocking=True)
            lead_mask = batch["lead_mask"].to(self.device, non_blocking=True)
            record_std = batch["record_std"].to(self.device, non_blocking=True)
            views = make_views(signal, lead_mask, self.config, self.fs, record_std)
            sync = micro == t.accumulate - 1 or not self.context.distributed
            with contextlib.nullcontext() if sync else self.ddp.no_sync(), self._autocast():
                out = self.ddp(views, lead_mask)
            (out["loss"] / t.accumulate).backward()
            for key in ("loss", "rec", "con"):
                if key in out:
                    totals[key] = totals.get(key, 0.0) + out[key].detach() / t.accumulate
            if self.probe is not None and self.context.is_main:
                matrix, labelled = self.probe_labels
                records = batch["record"]
                probe_loss = self.probe.update(
                    out["g"].float().mean(0), matrix[records].to(self.device), labelled[records].to(self.device)
                )
                if probe_loss is not None:
                    totals["probe_bce"] = totals.get("probe_bce", 0.0) + probe_loss / t.accumulate
        if not bool(torch.isfinite(totals["loss"])):  # before the optimizer step: the weights stay as they were
            raise TrainingError(
                f"step {self.step + 1}: the loss is {float(totals['loss'])} (lr {lr:g}); the run "
                f"stops here, the last good checkpoint is {self.checkpoint_path}"
            )
        if t.clip_grad > 0:
            totals["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_grad).detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        totals["lr"] = torch.tensor(lr)
        return totals

    def evaluate_probe(self) -> dict:
        result = self.probe.evaluate(self.model.encoder, self.probe_data, self.device)
        out = {"probe_auroc": result.value}
        if result.excluded:
            out["probe_excluded"] = result.excluded
        return out

    def run(self, stop_at: int | None = None) -> RunResult:
        config, t, main = self.config, self.config.train, self.context.is_main
        if main:
            os.makedirs(self.run_dir, exist_ok=True)
        resumed = self.resume()
        if main:
            write_text(os.path.join(self.run_dir, "config.yaml"), yaml.safe_dump(to_dict(config), sort_keys=False))
            action = f"resuming at step {self.step}" if resumed else "starting"
            size = sum(p.numel() for p in self.model.encoder.parameters()) / 1e6
            self.log(
                f"{action}: {len(self.dataset)} segments, {self.context.world_size} process(es) on "
                f"{self.device}, {self.precision}, {size:.2f} M encoder parameters"
            )
        metrics_path = os.path.join(self.run_dir, "metrics.jsonl")
        if main and resumed:
            _drop_metrics_after(metrics_path, self.step)  # steps after the checkpoint are computed again
        metrics = open(metrics_path, "a", encoding="utf-8") if main else None  # noqa: SIM115
        writer = _tensorboard(self.run_dir) if main else None
        samples_per_step = t.batch_size * t.accumulate * self.context.world_size
        end = t.steps if stop_at is None else min(stop_at, t.steps)
        progress = _progress(main and t.progress, self.step, t.steps)
        batches = _TimedIterator(self._loader())
        window: dict[str, float] = {}
        window_steps, window_start, started = 0, time.perf_counter(), time.perf_counter()
        first_step = self.step  # elapsed_s counts from here, also after a resume
        last: dict = {}
        self.model.train()
        interrupt = _InterruptBetweenSteps(self.context, self.device)
        try:
            interrupt.install()
            while self.step < end:
                totals = self.train_step(batches)
                for key, value in totals.items():
                    window[key] = window.get(key, 0.0) + value
                window_steps += 1
                if progress is not None:
                    progress.update(1)
                done = self.step == end
                if self.step % t.log_every == 0 or done:
                    elapsed = time.perf_counter() - window_start
                    last = {"step": self.step, "epoch": self.step * t.accumulate / self.batches.batches_per_epoch}
                    for key, value in window.items():
                        mean = value / window_steps
                        last[key] = float(
                            all_reduce_mean(torch.as_tensor(mean, device=self.device))
                            if key in ("loss", "rec", "con")
                            else mean
                        )
                    last["samples_per_s"] = samples_per_step * window_steps / max(elapsed, 1e-9)
                    last["data_wait"] = batches.take_waited() / max(elapsed, 1e-9)
                    last["elapsed_s"] = time.perf_counter() - started
                    if self.probe is not None and (self.step % config.probe.eval_every == 0 or done) and main:
                        last.update(self.evaluate_probe())
                    if main:
                        _record(metrics, writer, last)
                        self._report(progress, last, end, self.step - first_step)
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                saved = self.step % t.checkpoint_every == 0 or done
                if saved:
                    self.save()
                if interrupt.requested():
                    if not saved:
                        self.save()
                    if main:
                        self.log(
                            f"interrupted after step {self.step}; run the same command to resume from "
                            f"{self.checkpoint_path}"
                        )
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if main and not interrupt.seen:  # a second Ctrl-C, or one outside the steps: the last checkpoint stands
                self.log(f"interrupted; the same command resumes from the last checkpoint, {self.checkpoint_path}")
            raise
        finally:
            interrupt.uninstall()
            if progress is not None:
                progress.close()
            if metrics is not None:
                metrics.close()
            if writer is not None:
                writer.close()
        finished = self.step >= t.steps
        if finished and main:
            summary = {
                "steps": self.step,
                "final": last,
                "device": str(self.device),
                "precision": self.precision,
                "world_size": self.context.world_size,
                "encoder": os.path.join(self.run_dir, "encoder"),
            }
            write_json(os.path.join(self.run_dir, "summary.json"), summary)
        return RunResult(self.step, finished, last)

    def _report(self, progress, last: dict, end: int, steps_done: int) -> None:
        shown = {k: last[k] for k in ("loss", "rec", "con", "probe_auroc") if k in last}
        text = " ".join(f"{k} {v:.4f}" for k, v in shown.items())
        if progress is not None:
            progress.set_postfix_str(f"{text} | {last['samples_per_s']:.0f} samples/s")
        else:
            remaining = (end - self.step) * last["elapsed_s"] / max(1, steps_done)
            self.log(
                f"step {self.step}/{end} {text} | {last['samples_per_s']:.0f} samples/s, "
                f"data wait {100 * last['data_wait']:.1f} %, "
                f"elapsed {last['elapsed_s']:.0f} s, ETA {remaining:.0f} s"
            )


class _InterruptBetweenSteps:
    """Takes the first Ctrl-C (SIGINT) as a request the loop honours between steps, so the state it saves is
    a whole number of steps; a second one interrupts at once. In a distributed run every rank stops at the
    same step (the request is all-reduced), since a save gathers every rank's RNG state."""

    def __init__(self, context: Context, device: torch.device):
        self.context, self.device = context, device
        self.seen = False
        self._previous = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.seen:
            raise KeyboardInterrupt
        self.seen = True

    def requested(self) -> bool:
        if not self.context.distributed:
            return self.seen
        flag = torch.tensor([float(self.seen)], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        self.seen = bool(flag.item())
        return self.seen


class _TimedIterator:
    """Counts the seconds the training loop spends blocked on the next batch (the input pipeline's cost)."""

    def __init__(self, iterator):
        self.iterator, self.waited = iterator, 0.0

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            return next(self.iterator)
        finally:
            self.waited += time.perf_counter() - start

    def take_waited(self) -> float:
        """Seconds waited since the last call."""
        waited, self.waited = self.waited, 0.0
        return waited


def _progress(enabled: bool, initial: int, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc="pretrain")


def _tensorboard(run_dir: str):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(os.path.join(run_dir, "tensorboard"))


def read_metrics(path: str) -> list[dict]:
    """The rows of a run's metrics.jsonl, each a mapping with an integer ``step``; ``ValueError`` naming the
    file and line otherwise."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as error:
                raise ValueError(f"{path} line {number}: not JSON ({error})") from None
            if not isinstance(row, dict) or isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
                raise ValueError(f"{path} line {number}: not a metrics row (a mapping with an integer 'step')")
            rows.append(row)
    return rows


def _drop_metrics_after(path: str, step: int) -> None:
    if not os.path.isfile(path):
        return
    kept = [json.dumps(row) + "\n" for row in read_metrics(path) if row["step"] <= step]
    write_text(path, "".join(kept))


def _record(metrics, writer, values: dict) -> None:
    metrics.write(json.dumps(values) + "\n")
    metrics.flush()
    for key, value in values.items():
        if key != "step" and isinstance(value, float) and math.isfinite(value):
            writer.add_scalar(key, value, values["step"])
    writer.flush()


def pretrain(
    config: PretrainConfig | dict, run_dir: str, *, stop_at: int | None = None, log: Callable[[str], None] = print
) -> RunResult:
    """Train (or resume) a CoRe-ECG encoder into ``run_dir``; ``stop_at`` ends early as an interruption would."""
    if isinstance(config, dict):
        config = resolve(config)
    return Trainer(config, run_dir, log).run(stop_at=stop_at)
