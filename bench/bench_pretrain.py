"""Pretraining throughput per model preset and precision: samples/s, peak memory, FLOPs, MFU.

A step is the real one (``make_views`` on the device: crops, FDA, STDM; encoder, decoder, InfoNCE,
backward, AdamW) on synthetic 10 s 12-lead segments at 100 Hz, so it runs anywhere. Each
(preset, precision) runs in its own process so peak resident memory (CPU) belongs to it alone.
MFU = achieved matmul FLOP/s (analytic count, ``flops.py``) / the measured matmul peak of the
same precision.

    python bench/bench_pretrain.py --presets cpu tiny small base --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flops import matmul_peak, training_flops_per_sample
from report import publish, table

from coreecg.optim import parameter_groups
from coreecg.pretrain.config import resolve
from coreecg.pretrain.objective import CoReECG, make_views

FS, SEGMENT = 100.0, 1000


def measure_one(preset: str, precision: str, batch: int, steps: int, device: str) -> dict:
    """Time ``steps`` training steps after two warm-up steps; runs in a fresh process."""
    config = resolve({"data": {"store": "synthetic"}, "model": {"preset": preset}, "train": {"batch_size": batch}})
    torch.manual_seed(0)
    model = CoReECG(config).to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.05), lr=1e-4, fused=device != "cpu")
    signal = torch.randn(batch, 12, SEGMENT, device=device)
    lead_mask = torch.ones(batch, 12, dtype=torch.bool, device=device)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
    visible, n_time = [], 0

    def step() -> None:
        nonlocal n_time
        views = make_views(signal, lead_mask, config, FS)
        visible.append(float(views[0].visible.sum(dim=(1, 2)).float().mean()))
        n_time = views[0].visible.shape[-1]
        with autocast:
            loss = model(views, lead_mask)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if device != "cpu":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    visible.clear()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    flops = training_flops_per_sample(config, sum(visible) / len(visible), n_time)
    peak_memory = (torch.cuda.max_memory_allocated() if device != "cpu"
                   else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # fmt: skip
    return {
        "preset": preset, "precision": precision, "batch": batch, "steps": steps,
        "samples_per_s": batch * steps / seconds, "flops_per_sample": flops,
        "achieved_flops": flops * batch * steps / seconds, "peak_memory_gib": peak_memory / 2**30,
        "encoder_params_m": sum(p.numel() for p in model.encoder.parameters()) / 1e6,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu", "tiny", "small", "base"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--append", help="append the section to this Markdown file")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one[0], args.one[1], args.batch, args.steps, args.device)))
        return
    peaks = {p: matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16, args.device) for p in args.precisions}
    rows = []
    for preset in args.presets:
        for precision in args.precisions:
            command = [sys.executable, __file__, "--one", preset, precision, "--batch", str(args.batch),
                       "--steps", str(args.steps), "--device", args.device]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            mfu = r["achieved_flops"] / peaks[precision]
            rows.append([preset, f"{r['encoder_params_m']:.2f}", precision, r["batch"], f"{r['samples_per_s']:.1f}",
                         f"{r['flops_per_sample'] / 1e9:.2f}", f"{r['achieved_flops'] / 1e9:.1f}",
                         f"{100 * mfu:.1f} %", f"{r['peak_memory_gib']:.2f}"])  # fmt: skip
            print(rows[-1], file=sys.stderr)
    peak_text = ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items())
    body = (
        f"Device: {args.device}. Measured matmul peak (2048² matrices): {peak_text}. 5 s crops, patch 25, "
        "STDM (time 0.5, lead 0.2), both losses, conditioning on; synthetic 10 s segments at 100 Hz.\n\n"
    )
    body += table(["preset", "encoder M params", "precision", "batch", "samples/s", "GFLOP/sample (train)",
                   "achieved GFLOP/s", "MFU", "peak memory GiB"], rows)  # fmt: skip
    publish("Pretraining throughput per preset", body, args.append)


if __name__ == "__main__":
    main()
