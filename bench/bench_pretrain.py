"""Pretraining throughput per model preset and precision, against the plain reference: samples/s, MFU, memory.

A coreecg step is the real one (``make_views`` on the device: crops, FDA, STDM; encoder on the
visible tokens, decoder, InfoNCE, backward, AdamW) on synthetic 10 s 12-lead segments at 100 Hz, so
it runs anywhere. The reference step (``reference.py``: same sizes, same function, written the
plain way) gets the same kind of views ready-made, so its view-making cost is not even counted.
Each (implementation, preset, precision) runs in its own process, so peak resident memory (CPU)
belongs to it alone. MFU = achieved useful matmul FLOP/s (analytic count, ``flops.py``: visible
tokens only) / the matmul peak measured in the same run at the same precision.

    python bench/bench_pretrain.py --presets cpu tiny small base --append BENCHMARKS.md
    python bench/bench_pretrain.py --presets small --batch 16 32 64 --no-reference   # batch sweep
    python bench/bench_pretrain.py --presets tiny --compile --fused-adamw             # levers
    python bench/bench_pretrain.py --presets tiny --padded --no-reference             # without row grouping
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

from flops import matmul_peaks, training_flops_per_sample
from reference import PlainCoReECG, plain_step
from report import publish, table

from coreecg.optim import parameter_groups
from coreecg.pretrain.config import resolve
from coreecg.pretrain.objective import CoReECG, make_views

FS, SEGMENT = 100.0, 1000


def measure_one(
    implementation: str,
    preset: str,
    precision: str,
    batch: int,
    steps: int,
    device: str,
    compile_model: bool = False,
    fused_adamw: bool = False,
    padded: bool = False,
) -> dict:
    """Time ``steps`` training steps after warm-up steps; runs in a fresh process."""
    # No amplitude token: the reference has none, and one token among ~240 changes no timing.
    config = resolve(
        {
            "data": {"store": "synthetic"},
            "model": {"preset": preset, "amplitude_token": False},
            "train": {"batch_size": batch},
        }
    )
    torch.manual_seed(0)
    model = (CoReECG(config) if implementation == "coreecg" else PlainCoReECG.like(config)).to(device)
    if padded:
        model.encoder.group_rows = False
    fused = fused_adamw or device != "cpu"
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.05), lr=1e-4, fused=fused)
    forward = torch.compile(model, dynamic=True) if compile_model else model
    signal = torch.randn(batch, 12, SEGMENT, device=device)
    lead_mask = torch.ones(batch, 12, dtype=torch.bool, device=device)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
    visible, n_time = [], 0

    def step() -> None:
        nonlocal n_time
        views = make_views(signal, lead_mask, config, FS)
        visible.append(float(views[0].visible.sum(dim=(1, 2)).float().mean()))
        n_time = views[0].visible.shape[-1]
        if implementation == "reference":
            with autocast:
                plain_step(
                    forward,
                    optimizer,
                    [v.signal for v in views],
                    [v.target for v in views],
                    [v.visible for v in views],
                    lead_mask,
                )
            return
        with autocast:
            loss = forward(views, lead_mask)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(4 if compile_model else 2):  # compiled: a few shapes of the visible count get traced
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
    peak_memory = (
        torch.cuda.max_memory_allocated()
        if device != "cpu"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "implementation": implementation,
        "preset": preset,
        "precision": precision,
        "batch": batch,
        "steps": steps,
        "samples_per_s": batch * steps / seconds,
        "flops_per_sample": flops,
        "achieved_flops": flops * batch * steps / seconds,
        "peak_memory_gib": peak_memory / 2**30,
        "encoder_params_m": sum(p.numel() for p in model.encoder.parameters()) / 1e6,
    }


def run_isolated(**kwargs) -> dict:
    """``measure_one(**kwargs)`` in a fresh process (its own peak RSS)."""
    command = [sys.executable, __file__, "--one", json.dumps(kwargs)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"measurement {kwargs} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu", "tiny", "small", "base"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, nargs="+", default=[32], help="one or more batch sizes")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-reference", action="store_true", help="coreecg only (no reference rows)")
    parser.add_argument("--compile", action="store_true", help="lever: torch.compile the model")
    parser.add_argument("--fused-adamw", action="store_true", help="lever: fused AdamW also on CPU")
    parser.add_argument("--padded", action="store_true", help="lever off: pad rows instead of grouping them (CPU)")
    parser.add_argument("--append", help="append the section to this Markdown file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(**json.loads(args.one))))
        return
    peaks = matmul_peaks(args.precisions, args.device)
    rows = []
    for preset in args.presets:
        for precision in args.precisions:
            for batch in args.batch:
                common = {
                    "preset": preset,
                    "precision": precision,
                    "batch": batch,
                    "steps": args.steps,
                    "device": args.device,
                }
                r = run_isolated(
                    implementation="coreecg",
                    compile_model=args.compile,
                    fused_adamw=args.fused_adamw,
                    padded=args.padded,
                    **common,
                )
                ref = None if args.no_reference else run_isolated(implementation="reference", **common)
                mfu = r["achieved_flops"] / peaks[precision]
                rows.append(
                    [
                        preset,
                        f"{r['encoder_params_m']:.2f}",
                        precision,
                        batch,
                        f"{r['samples_per_s']:.1f}",
                        "–" if ref is None else f"{ref['samples_per_s']:.1f}",
                        "–" if ref is None else f"{r['samples_per_s'] / ref['samples_per_s']:.2f}×",
                        f"{r['flops_per_sample'] / 1e9:.2f}",
                        f"{r['achieved_flops'] / 1e9:.1f}",
                        f"{100 * mfu:.1f} %",
                        f"{r['peak_memory_gib']:.2f}",
                        "–" if ref is None else f"{ref['peak_memory_gib']:.2f}",
                    ]
                )
                print(rows[-1], file=sys.stderr)
    peak_text = ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items())
    levers = [
        name
        for name, on in (
            ("torch.compile", args.compile),
            ("fused AdamW", args.fused_adamw),
            ("padded rows instead of grouped", args.padded),
        )
        if on
    ]
    body = (
        f"Device: {args.device}. Measured matmul peak (2048² matrices): {peak_text}. 5 s crops, patch 25, "
        "STDM (time 0.5, lead 0.2), both losses, conditioning on; synthetic 10 s segments at 100 Hz. "
        f"coreecg levers: {', '.join(levers) or 'none (the library defaults)'}. Reference: `bench/reference.py`.\n\n"
    )
    body += table(
        [
            "preset",
            "encoder M params",
            "precision",
            "batch",
            "coreecg samples/s",
            "reference samples/s",
            "coreecg / reference",
            "GFLOP/sample (train, useful)",
            "coreecg achieved GFLOP/s",
            "coreecg MFU",
            "coreecg peak memory GiB",
            "reference peak memory GiB",
        ],
        rows,
    )
    publish("Pretraining step: coreecg against the reference", body, args.append)


if __name__ == "__main__":
    main()
