"""How much a trained decoder relies on its alignment token: reconstruction loss under swapped conditions.

A research check (BENCHMARKS.md, "PTB-XL ablations, run 3"). The alignment (DESIGN §1.5) gives the
decoder one token built from the *other* view's g. If the decoder uses it, the reconstruction loss
rises when that g is replaced by another record's g, the batch mean or zeros. If the loss does not
move, the token carries nothing the visible patches do not already give. Views are drawn with a
fixed seed from the validation part (fold 9), with the run's own crops, FDA and masks.

    .venv/bin/python experiments/alignment/alignment_use.py RUN_DIR [RUN_DIR ...] --batches 30
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from coreecg.dataset import StoreDataset
from coreecg.pretrain.config import load_pretrain_config
from coreecg.pretrain.loop import CHECKPOINT
from coreecg.pretrain.objective import CoReECG, make_views
from coreecg.state_file import load_state
from coreecg.store import Store, StoreError

CONDITIONS = ("other view's g (training)", "another record's g", "batch mean g", "zero g")


@torch.no_grad()
def reconstruction_by_condition(run_dir: str, split: str, batches: int, batch_size: int, seed: int) -> dict:
    """Mean masked-patch MSE per condition over ``batches`` fixed batches of ``split``."""
    config = load_pretrain_config(os.path.join(run_dir, "config.yaml"))
    model = CoReECG(config)
    state = load_state(os.path.join(run_dir, CHECKPOINT))
    model.load_state_dict(state["model"])
    model.eval()
    conditioned = model.decoder is not None and model.decoder.cond_proj is not None
    store = Store(config.stores[0])
    data = StoreDataset(store, mode="train", splits=[split], amplitude=config.data.amplitude())
    order = np.random.default_rng(seed).permutation(len(data))[: batches * batch_size]
    if len(order) == 0:
        raise ValueError(f"{store.path}: no segments in part {split!r}")
    starts = range(0, len(order), batch_size)  # fewer than ``batches`` when the part is small
    totals = {name: 0.0 for name in CONDITIONS}
    torch.manual_seed(seed)
    for start in starts:
        batch = data[order[start : start + batch_size]]
        views = make_views(batch["signal"], batch["lead_mask"], config, store.fs, batch["record_std"])
        encoded = [model.encoder(v.signal, v.visible, v.record_std) for v in views]
        for i, view in enumerate(views):
            other = encoded[1 - i].g
            if not conditioned:  # no alignment token: one loss, the same under every condition
                loss = float(model.reconstruction_loss(view, encoded[i], batch["lead_mask"], None))
                losses = dict.fromkeys(CONDITIONS, loss)
            else:
                conds = (
                    other,
                    other.roll(1, dims=0),
                    other.mean(0, keepdim=True).expand_as(other),
                    torch.zeros_like(other),
                )
                losses = {
                    name: float(model.reconstruction_loss(view, encoded[i], batch["lead_mask"], cond))
                    for name, cond in zip(CONDITIONS, conds, strict=True)
                }
            for name, loss in losses.items():
                totals[name] += loss / (2 * len(starts))
    return {"steps": state["step"], "align": config.objective.align, **totals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="pretraining run folders (config.yaml and checkpoint.safetensors)")
    parser.add_argument("--split", default="val", help="the store part to draw views from (default: val)")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"| run | steps | align | {' | '.join(CONDITIONS)} |")
    print(f"|---|---|---|{'---|' * len(CONDITIONS)}")
    for run in args.runs:
        try:
            result = reconstruction_by_condition(run, args.split, args.batches, args.batch_size, args.seed)
        except (OSError, KeyError, ValueError, StoreError) as error:  # ValueError: ConfigError, no decoder
            parser.error(f"{run}: {error}")
        losses = " | ".join(f"{result[name]:.4f}" for name in CONDITIONS)
        print(f"| {os.path.basename(os.path.normpath(run))} | {result['steps']} | {result['align']} | {losses} |")


if __name__ == "__main__":
    main()
