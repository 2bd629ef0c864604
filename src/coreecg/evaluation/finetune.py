"""Fine-tuning: encoder + linear head, layer-wise lr decay, drop-path, early stopping on validation macro AUROC.

Training sees random crops of the (possibly fractional) train records; every evaluation scores
the validation records (windows averaged per record). The best state by validation macro AUROC
is kept on disk (``classifier/``); training stops after ``patience`` evaluations without
improvement. Thresholds are tuned on validation with the best state. The test part, if given,
is scored once, after all of that, and can change nothing that was chosen.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from coreecg.config import to_dict
from coreecg.dataset import StoreDataset
from coreecg.evaluation.classifier import classifier_from_encoder, record_probabilities, save_classifier
from coreecg.evaluation.features import check_compatible
from coreecg.evaluation.outcome import Outcome
from coreecg.evaluation.selection import Selection
from coreecg.metrics import macro_auroc, tune_thresholds
from coreecg.optim import layer_decay_groups, warmup_cosine
from coreecg.pretrained import PretrainedEncoder
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


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (the fast path there); plain fp32 elsewhere (bf16 is slower on CPUs without AMX)."""
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
    train = StoreDataset(store, mode="train", crop_seconds=crop / store.fs, label_set=selection.task,
                         records=selection.train.rows, leads=leads)  # fmt: skip
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
    info = {"task": selection.task, "leads": leads, "selection": selection.describe(), "finetune": to_dict(config),
            "encoder_info": pretrained.info}  # fmt: skip
    classifier_dir = os.path.join(out, "classifier")
    history: list[dict] = []
    best_auroc, best_step, best_state, bad_evals, step = -math.inf, 0, None, 0, 0
    log(f"fine-tuning on {len(train)} train segments, {len(selection.val.rows)} validation records, "
        f"{total_steps} steps at most, evaluating every {eval_every}, on {device}")  # fmt: skip
    model.train()
    while step < total_steps and bad_evals < config.patience:
        for batch in train.loader(batch_size, drop_last=True, generator=generator):
            lr = warmup_cosine(step, total_steps, warmup, config.lr, config.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            x, mask = batch["signal"].to(device), batch["lead_mask"].to(device)
            with autocast_for(device):
                logits = model(x, mask)
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch["label"].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if step % eval_every == 0 or step == total_steps:
                p = record_probabilities(model, store, selection.val.rows, crop, leads)
                auroc = macro_auroc(selection.val.labels, p, classes).value
                improved = auroc > best_auroc
                if improved:
                    best_auroc, best_step, bad_evals = auroc, step, 0
                    best_state = copy.deepcopy(model.state_dict())
                    save_classifier(model, classifier_dir, pretrained.preprocessing, pretrained.crop_seconds,
                                    info | {"best_step": step, "thresholds": [0.5] * len(classes)})  # fmt: skip
                else:
                    bad_evals += 1
                history.append({"step": step, "epoch": step / steps_per_epoch, "train_bce": loss.item(), "lr": lr,
                                "val_auroc": auroc})  # fmt: skip
                log(f"step {step}/{total_steps} bce {loss.item():.4f} val macro AUROC {auroc:.4f}"
                    + (" (best)" if improved else f" (best {best_auroc:.4f} at {best_step})"))  # fmt: skip
                if bad_evals >= config.patience:
                    break
            if step >= total_steps:
                break
    if best_state is None:
        raise ValueError("fine-tuning never produced a validation score (empty validation part?)")
    model.load_state_dict(best_state)
    val_p = record_probabilities(model, store, selection.val.rows, crop, leads)
    thresholds = tune_thresholds(selection.val.labels, val_p)
    save_classifier(model, classifier_dir, pretrained.preprocessing, pretrained.crop_seconds,
                    info | {"best_step": best_step, "thresholds": thresholds.tolist()})  # fmt: skip
    test_p = None
    if selection.test is not None:  # scored once, after every choice is made
        test_p = record_probabilities(model, store, selection.test.rows, crop, leads)
    chosen = {"best_step": best_step, "best_val_auroc": best_auroc, "history": history}
    return Outcome(val_p, test_p, thresholds, chosen, time.perf_counter() - start_time)
