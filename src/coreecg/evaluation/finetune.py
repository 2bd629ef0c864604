"""Fine-tuning: encoder + linear head, layer-wise lr decay, drop-path, early stopping on validation macro AUROC.

Training sees random crops of the (possibly fractional) train records; every evaluation scores
the validation records (windows averaged per record). The best state by validation macro AUROC
is kept on disk (``classifier/``); training stops after ``patience`` evaluations without
improvement. Thresholds are tuned on validation with the best state. The test part, if given,
is scored once, after all of that, and can change nothing that was chosen.

A stopped run resumes: at every evaluation the model, optimizer, RNG streams, the position in the
epoch's batch order and the best state so far go to ``finetune-state.safetensors`` (never a pickle: see
``coreecg.state_file``), and calling ``finetune`` again on the same ``out`` goes on from there
(fine-tuning on a CPU takes hours). A non-finite loss stops the run before the optimizer applies it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from coreecg.config import ConfigError, describe_differences, to_dict
from coreecg.dataset import StoreDataset
from coreecg.errors import TrainingError
from coreecg.evaluation.classifier import classifier_from_encoder, record_probabilities, save_classifier
from coreecg.evaluation.features import check_compatible
from coreecg.evaluation.outcome import Outcome
from coreecg.evaluation.selection import Selection
from coreecg.metrics import macro_auroc, tune_thresholds
from coreecg.optim import layer_decay_groups, warmup_cosine
from coreecg.pretrained import PretrainedEncoder
from coreecg.state_file import CONTENT_ERRORS, load_state, refuse_pickled, save_state, unusable
from coreecg.store import Store


@dataclass
class FinetuneConfig:
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    batch_size: int = 64
    lr: float = 1e-3  # peak lr of the head; encoder layer k gets lr · layer_decay^(depth + 1 - k)
    min_lr: float = 1e-6
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    drop_path: float = 0.1
    warmup_epochs: float = 1.0
    min_steps_per_eval: int = 50  # at small label fractions an "epoch" is a few steps; evaluate less often
    patience: int = 5  # evaluations without a better validation macro AUROC before stopping
    device: str = "auto"
    seed: int = 0


STATE_FILE = "finetune-state.safetensors"  # written at every evaluation, removed when the run finishes
PICKLED_STATE_FILE = "finetune-state.pt"  # what earlier versions wrote; refused, never unpickled


@dataclass
class _FinetuneState:
    """Everything a stopped fine-tuning run needs to go on as if it had not stopped."""

    generator_state: torch.Tensor  # the batch-order generator at the start of the current epoch
    position: int = 0  # batches of the current epoch already trained on
    step: int = 0
    best_auroc: float = -math.inf
    best_step: int = 0
    best_state: dict | None = None
    bad_evals: int = 0
    history: list = field(default_factory=list)


def _save_state(path: str, run: _FinetuneState, model, optimizer, info: dict) -> None:
    state = {
        "run": vars(run),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "info": info,
    }
    save_state(path, state)


def _resume(path: str, model, optimizer, info: dict) -> _FinetuneState:
    """Load a stopped run's state; refuses one that fine-tuned something else."""
    state = load_state(path)
    try:
        changed = describe_differences(state["info"], info)
        if changed:
            raise ConfigError(
                f"{path} holds a fine-tuning run with other settings ({'; '.join(changed)}); "
                "delete it to start over, or use the same settings to resume"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])  # crops and drop-path continue their streams
        return _FinetuneState(**state["run"])
    except CONTENT_ERRORS as error:
        raise unusable(path, "fine-tuning state", error) from None


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (the fast path there); plain fp32 elsewhere: a CPU training step of the cpu and tiny
    sizes is slower in bf16, even with AMX (0.67x for cpu, 0.94x for tiny; bench/bench_pretrain.py)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def finetune(
    pretrained: PretrainedEncoder,
    store: Store,
    selection: Selection,
    out: str,
    config: FinetuneConfig | None = None,
    leads: str | None = None,
    log: Callable[[str], None] = print,
) -> Outcome:
    """Fine-tune on ``selection.train``, select on ``selection.val``; the best state goes to ``out/classifier``."""
    config = config or FinetuneConfig()
    check_compatible(pretrained.preprocessing, store)
    start_time = time.perf_counter()
    device = _device(config.device)
    classes = selection.train.classes
    torch.manual_seed(config.seed)
    model = classifier_from_encoder(pretrained, classes, config.drop_path).to(device)
    crop = pretrained.crop_samples
    train = StoreDataset(
        store,
        mode="train",
        crop_seconds=crop / store.fs,
        label_set=selection.task,
        records=selection.train.rows,
        leads=leads,
        amplitude=pretrained.amplitude,
    )
    batch_size = min(config.batch_size, len(train))
    steps_per_epoch = max(1, len(train) // batch_size)
    eval_every = max(steps_per_epoch, config.min_steps_per_eval)
    total_steps = max(config.epochs * steps_per_epoch, eval_every)
    warmup = round(config.warmup_epochs * steps_per_epoch)
    depth = model.encoder.config.depth
    optimizer = torch.optim.AdamW(
        layer_decay_groups(model, "encoder.", depth, config.weight_decay, config.layer_decay), lr=config.lr
    )
    generator = torch.Generator().manual_seed(config.seed)
    info = {
        "task": selection.task,
        "leads": leads,
        "selection": selection.describe(),
        "finetune": to_dict(config),
        "encoder_info": pretrained.info,
    }
    classifier_dir = os.path.join(out, "classifier")

    def keep_classifier(best_step: int, thresholds: list[float]) -> None:
        save_classifier(
            model,
            classifier_dir,
            pretrained.preprocessing,
            pretrained.crop_seconds,
            pretrained.amplitude,
            info | {"best_step": best_step, "thresholds": thresholds},
        )

    state_path = os.path.join(out, STATE_FILE)
    refuse_pickled(os.path.join(out, PICKLED_STATE_FILE), STATE_FILE)
    run = _FinetuneState(generator_state=generator.get_state())
    if os.path.isfile(state_path):
        run = _resume(state_path, model, optimizer, info)
        generator.set_state(run.generator_state)
        log(f"resuming fine-tuning at step {run.step} (best {run.best_auroc:.4f} at {run.best_step})")
    log(
        f"fine-tuning on {len(train)} train segments, {len(selection.val.rows)} validation records, "
        f"{total_steps} steps at most, evaluating every {eval_every}, on {device}"
    )
    model.train()
    while run.step < total_steps and run.bad_evals < config.patience:
        run.generator_state = generator.get_state()  # the epoch's order is redrawn from here on resume
        order = torch.randperm(len(train), generator=generator).numpy()
        for first in range(run.position * batch_size, len(order) - batch_size + 1, batch_size):
            run.position += 1
            batch = train.batch(order[first : first + batch_size])
            lr = warmup_cosine(run.step, total_steps, warmup, config.lr, config.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            x, mask = batch["signal"].to(device), batch["lead_mask"].to(device)
            with autocast_for(device):
                logits = model(x, mask, batch["record_std"].to(device))
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch["label"].to(device))
            if not bool(torch.isfinite(loss)):
                raise TrainingError(
                    f"fine-tuning step {run.step + 1}: the loss is {loss.item()} (lr {lr:g}); "
                    f"stopped, the last good state is {state_path}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            run.step += 1
            if run.step % eval_every == 0 or run.step == total_steps:
                p = record_probabilities(model, store, selection.val.rows, crop, leads, pretrained.amplitude)
                auroc = macro_auroc(selection.val.labels, p, classes).value
                improved = auroc > run.best_auroc
                if improved:
                    run.best_auroc, run.best_step, run.bad_evals = auroc, run.step, 0
                    run.best_state = copy.deepcopy(model.state_dict())
                    keep_classifier(run.step, [0.5] * len(classes))
                else:
                    run.bad_evals += 1
                run.history.append(
                    {
                        "step": run.step,
                        "epoch": run.step / steps_per_epoch,
                        "train_bce": loss.item(),
                        "lr": lr,
                        "val_auroc": auroc,
                    }
                )
                log(
                    f"step {run.step}/{total_steps} bce {loss.item():.4f} val macro AUROC {auroc:.4f}"
                    + (" (best)" if improved else f" (best {run.best_auroc:.4f} at {run.best_step})")
                )
                _save_state(state_path, run, model, optimizer, info)
                if run.bad_evals >= config.patience:
                    break
            if run.step >= total_steps:
                break
        else:
            run.position = 0  # the epoch ran to its end: the next one starts at its first batch
    if run.best_state is None:
        raise ValueError("fine-tuning never produced a validation score (empty validation part?)")
    model.load_state_dict(run.best_state)
    val_p = record_probabilities(model, store, selection.val.rows, crop, leads, pretrained.amplitude)
    thresholds = tune_thresholds(selection.val.labels, val_p)
    keep_classifier(run.best_step, thresholds.tolist())
    if os.path.isfile(state_path):
        os.remove(state_path)  # finished: the classifier holds everything that is kept
    test_p = None
    if selection.test is not None:  # scored once, after every choice is made
        test_p = record_probabilities(model, store, selection.test.rows, crop, leads, pretrained.amplitude)
    chosen = {"best_step": run.best_step, "best_val_auroc": run.best_auroc, "history": run.history}
    return Outcome(val_p, test_p, thresholds, chosen, time.perf_counter() - start_time)
