"""Linear probes on g+time+change with and without each lead's mean output token.

A research check (BENCHMARKS.md, "Per-lead tokens in the probe"): g and the time statistics average
over the leads, so a lead-specific finding (an inferior against an anterior MI) reaches the probe
only through that average. Appending the mean over time of each lead's output tokens (12·D more
numbers; absent leads give zeros) tells how much the probe loses by it, for a trained encoder and
for random init of the same size. Validation part only, as every probe choice is.

    python experiments/probe-studies/probe_lead_tokens.py ENCODER STORE --tasks super_class --fraction 0.1 --seeds 0 1 2
    python experiments/probe-studies/probe_lead_tokens.py random:cpu STORE ...   # untrained, with the token
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from coreecg.evaluation.features import check_compatible, random_encoder, record_outputs
from coreecg.evaluation.probe import probe_selection
from coreecg.evaluation.selection import select
from coreecg.metrics import macro_auroc
from coreecg.model import time_statistics, token_grid
from coreecg.pretrained import load_encoder
from coreecg.store import Store, StoreError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder", help="a saved encoder or pretraining run folder, or random:PRESET")
    parser.add_argument("store", help="a labelled store (e.g. coreecg prepare ptbxl-tables)")
    parser.add_argument("--tasks", nargs="+", default=["super_class"])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train", default="train")
    parser.add_argument("--val", default="val")
    args = parser.parse_args()

    try:
        store = Store(args.store)
        if args.encoder.startswith("random:"):
            encoder = random_encoder(args.encoder.split(":", 1)[1], store, 5.0, 0, amplitude_token=True)
        else:
            encoder = load_encoder(args.encoder)
        check_compatible(encoder.preprocessing, store)
        selections = [
            select(store, task, args.train, args.val, None, args.fraction, seed)
            for task in args.tasks
            for seed in args.seeds
        ]
    except (OSError, ValueError, StoreError) as error:
        parser.error(str(error))
    model = encoder.encoder

    def with_lead_tokens(x: torch.Tensor, lead_mask: torch.Tensor, record_std: torch.Tensor) -> torch.Tensor:
        n_time = x.shape[-1] // model.config.patch
        encoded = model(x, lead_mask[:, :, None].expand(-1, -1, n_time), record_std)
        statistics = time_statistics(encoded, lead_mask, n_time, change=True)  # what embed's g+time+change adds
        return torch.cat([encoded.g, statistics, token_grid(encoded, n_time).mean(2).flatten(1)], dim=1)

    rows = np.unique(np.concatenate([np.concatenate([s.train.rows, s.val.rows]) for s in selections]))
    position = {int(r): i for i, r in enumerate(rows)}
    start = time.perf_counter()
    values = record_outputs(encoder, with_lead_tokens, store, rows, encoder.crop_samples, amplitude=encoder.amplitude)
    print(json.dumps({"embedded": len(rows), "seconds": round(time.perf_counter() - start)}), flush=True)
    summary_width = 4 * model.config.dim
    for name, width in (("g+time+change", summary_width), ("g+time+change+leads", values.shape[1])):
        for selection in selections:
            start = time.perf_counter()

            def embed(chosen: np.ndarray, width: int = width) -> np.ndarray:
                return values[[position[int(r)] for r in chosen], :width]

            outcome = probe_selection(embed, selection)
            score = macro_auroc(selection.val.labels, outcome.val_probabilities, selection.val.classes)
            line = {
                "features": name,
                "task": selection.task,
                "fraction": selection.fraction,
                "seed": selection.seed,
                "val_macro_auroc": round(score.value, 4),
                "c": outcome.chosen["c"],
                "seconds": round(time.perf_counter() - start),
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
