"""A lever on and off in one process, interleaved round by round, so machine noise hits both alike.

Separate-process runs on a shared 2-core machine drift by ±10 %, more than some levers are worth;
alternating short rounds of the two variants inside one process gives a fair A/B. Levers:
- ``row-groups``: the encoder encodes rows of equal visible count together (CPU default) against
  one batch padded to the longest row with an attention mask;
- ``implementation``: coreecg's training step against ``reference.py``'s (same views, same weights),
  the pretraining-step ratio of ``bench_pretrain.py`` measured without drift between processes.

    python bench/bench_levers.py row-groups --preset tiny --batch 32 --append BENCHMARKS.md
    python bench/bench_levers.py implementation --preset tiny --batch 32 --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import PlainCoReECG, plain_step
from report import publish, table

from coreecg.optim import parameter_groups
from coreecg.pretrain.config import resolve
from coreecg.pretrain.objective import CoReECG, make_views

LEVERS = {
    "row-groups": {"on": {"group_rows": True}, "off": {"group_rows": False}},
    "implementation": {"on": {"reference": False}, "off": {"reference": True}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lever", choices=sorted(LEVERS))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round and variant")
    parser.add_argument("--append")
    args = parser.parse_args()
    config = resolve(
        {
            "data": {"store": "synthetic"},
            "model": {"preset": args.preset, "amplitude_token": False},
            "train": {"batch_size": args.batch},
        }
    )
    signal = torch.randn(args.batch, 12, 1000)
    lead_mask = torch.ones(args.batch, 12, dtype=torch.bool)
    variants = {}
    for name, settings in LEVERS[args.lever].items():
        torch.manual_seed(0)
        model = PlainCoReECG.like(config) if settings.get("reference") else CoReECG(config)
        if "group_rows" in settings:
            model.encoder.group_rows = settings["group_rows"]
        variants[name] = (model, torch.optim.AdamW(parameter_groups(model, 0.05), lr=1e-4))
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (model, optimizer) in variants.items():

            def step(model=model, optimizer=optimizer) -> None:
                views = make_views(signal, lead_mask, config, 100.0)
                if isinstance(model, PlainCoReECG):
                    parts = [[v.signal for v in views], [v.target for v in views], [v.visible for v in views]]
                    plain_step(model, optimizer, *parts, lead_mask)
                    return
                model(views, lead_mask)["loss"].backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            step()  # warm-up after the other variant ran
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates[name].append(args.batch * args.steps / (time.perf_counter() - start))
    rows = [[name, f"{statistics.median(r):.1f}", " ".join(f"{v:.1f}" for v in r)] for name, r in rates.items()]
    ratio = statistics.median(rates["on"]) / statistics.median(rates["off"])
    body = (
        f"Lever `{args.lever}`, {args.preset} preset, batch {args.batch}, full training step (views, forward, "
        f"backward, AdamW), {args.rounds} interleaved rounds of {args.steps} steps.\n\n"
        + table(["variant", "median samples/s", "per round"], rows)
        + f"\n\non / off: {ratio:.2f}×"
    )
    publish(f"Lever A/B: {args.lever}", body, args.append)


if __name__ == "__main__":
    main()
