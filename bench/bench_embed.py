"""Embedding throughput: ten-second 12-lead records → g, coreecg against the plain reference, same run.

- coreecg: the library path (``record_embeddings``): batched windows from the memory-mapped store,
  only present leads tokenized, fused attention.
- reference: ``wfdb.rdsamp`` per record, the store's preprocessing (filter, resample) and
  normalization per record, the same windows, ``bench/reference.py``'s
  plain encoder (hand-written attention) with the same weights. The script checks that both give
  the same embeddings and prints the largest difference.

Synthetic records by default (written as WFDB and prepared as a store under ``--work``); with
``--store`` the real ones (the reference reads the WFDB files the store was prepared from; ``--wfdb-root``
says where they are on this machine).
``--precisions fp32 bf16`` also times the library's bf16 path (``record_embeddings(precision="bf16")``);
the reference stays fp32, so its Δg column then shows bf16's error.
MFU = forward matmul FLOPs (``flops.py``) per second / the matmul peak measured in this run at the same
precision.

    python bench/bench_embed.py --presets cpu tiny --append BENCHMARKS.md
    python bench/bench_embed.py --presets cpu tiny --precisions fp32 bf16 --no-reference
    python bench/bench_embed.py --presets tiny --batch 2 4 8 16 32 64 --no-reference   # batch sweep
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import wfdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flops import encoder_flops, matmul_peaks
from inputs import store_paths, synthetic_inputs
from reference import PlainEncoder
from report import publish, table, timed

from coreecg.dataset import normalize_crops, window_starts, windows_to_cover
from coreecg.evaluation.features import random_encoder, record_embeddings
from coreecg.leads import N_LEADS
from coreecg.preprocess import PrepConfig, prepare_record
from coreecg.record import RawRecord
from coreecg.store import Store


def reference_embeddings(
    encoder: PlainEncoder, paths: list[str], config: PrepConfig, crop: int, batch_windows: int
) -> np.ndarray:
    """Per record: rdsamp, the store's preprocessing and normalization, evenly spaced windows; then the
    plain encoder over batches of windows, and the mean of g per record."""
    windows, owners = [], []
    for i, path in enumerate(paths):
        signal, fields = wfdb.rdsamp(path)
        raw = RawRecord(
            record_id=str(i), path=path, signal=signal.T, fs=fields["fs"], lead_names=fields["sig_name"], source="wfdb"
        )
        prepared = prepare_record(raw, config)
        x = prepared.signal.astype(np.float32)[None, None]
        normalize_crops(x, prepared.lead_mean[None], np.array([prepared.record_std]), prepared.lead_mask[None])
        length = x.shape[-1]
        for start in window_starts(np.array([length - crop]), windows_to_cover(length, crop))[0]:
            windows.append(x[0, 0, :, start : start + crop])
            owners.append(i)
    n_time = crop // encoder.config.patch
    g = []
    for s in range(0, len(windows), batch_windows):
        x = torch.from_numpy(np.stack(windows[s : s + batch_windows]))
        g.append(encoder(x, torch.ones(len(x), N_LEADS, n_time, dtype=torch.bool))[1])
    g_all, owners_array = torch.cat(g).numpy(), np.asarray(owners)
    return np.stack([g_all[owners_array == i].mean(0) for i in range(len(paths))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu", "tiny"])
    parser.add_argument("--batch", type=int, nargs="+", default=[None], help="records per batch (default: library's)")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32"])
    parser.add_argument("--records", type=int, default=256, help="synthetic records (default input)")
    parser.add_argument("--store", help="a prepared store instead of synthetic records")
    parser.add_argument("--wfdb-root", help="where the store's WFDB records are on this machine")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "coreecg-bench-inputs"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--append")
    args = parser.parse_args()
    if args.store:
        store, source = Store(args.store), f"store {args.store}"
    else:
        store = Store(synthetic_inputs(args.work, args.records))
        source = f"{args.records} synthetic 10 s records at 100 Hz"
    paths = store_paths(store, args.wfdb_root)
    rows = np.arange(store.n_records)
    seconds = float(store.records["duration_s"].mean()) if "duration_s" in store.records else 10.0
    peaks = matmul_peaks(args.precisions)
    torch.set_grad_enabled(False)
    table_rows = []
    for preset in args.presets:
        encoder = random_encoder(preset, store, crop_seconds=5.0, seed=0)
        crop = encoder.crop_samples
        windows_per_record = windows_to_cover(store.config.segment_samples, crop)
        config = encoder.encoder.config
        flops = windows_per_record * encoder_flops(config, N_LEADS * crop // config.patch)
        ref_rate, theirs = None, None
        if not args.no_reference:  # fp32, once per preset: the yardstick for every batch and precision
            plain = PlainEncoder(encoder.encoder.config)
            plain.load_state_dict(encoder.encoder.state_dict())
            plain.eval()
            seconds_ref, theirs = timed(
                lambda: reference_embeddings(plain, paths, store.config, crop, 64),  # noqa: B023
                args.repeats,
            )
            ref_rate = len(paths) / seconds_ref
        for precision in args.precisions:
            for batch in args.batch:
                extra = {"precision": precision} | ({} if batch is None else {"batch_size": batch})
                seconds_core, ours = timed(lambda: record_embeddings(encoder, store, rows, **extra), args.repeats)  # noqa: B023
                rate = len(rows) / seconds_core
                table_rows.append(
                    [
                        preset,
                        precision,
                        "library default" if batch is None else batch,
                        f"{rate:.1f}",
                        "–" if ref_rate is None else f"{ref_rate:.1f}",
                        "–" if ref_rate is None else f"{rate / ref_rate:.2f}×",
                        f"{flops / 1e9:.2f}",
                        f"{100 * rate * flops / peaks[precision]:.1f} %",
                        "–" if theirs is None else f"{float(np.abs(ours - theirs).max()):.1e}",
                    ]
                )
                print(table_rows[-1], file=sys.stderr)
    peak_text = ", ".join(f"{p} {peaks[p] / 1e9:.0f}" for p in args.precisions)
    body = (
        f"Input: {source} (mean {seconds:.1f} s). Windows of 5 s covering each record; random-init "
        f"encoders (speed does not depend on the weights). Matmul peak measured in this run (GFLOP/s): "
        f"{peak_text}. Reference: wfdb.rdsamp and preprocessing per record + "
        "`bench/reference.py` plain encoder (fp32), 64 windows per batch.\n\n"
    )
    body += table(
        [
            "preset",
            "precision",
            "batch (records)",
            "coreecg records/s",
            "reference records/s",
            "coreecg / reference",
            "GFLOP/record",
            "MFU (same precision)",
            "max |Δg| vs reference",
        ],
        table_rows,
    )
    publish("Embedding throughput: coreecg against the reference", body, args.append)


if __name__ == "__main__":
    main()
