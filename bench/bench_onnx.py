"""Records/s of the exported ONNX encoder (onnxruntime) against the same encoder in PyTorch, same run.

Both embed the same windows: every record of a store (synthetic 10 s records at 100 Hz by default) cut
into the evenly spaced 5 s windows the library uses, normalized, batched by ``--batch`` windows.
PyTorch runs the library's path (only present leads tokenized); onnxruntime runs the exported grid
(``coreecg.export``). Both on this CPU with their default thread counts; the largest |Δg| is printed.

    python bench/bench_onnx.py --presets cpu tiny --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inputs import synthetic_inputs
from report import publish, table, timed

from coreecg.dataset import StoreDataset, windows_to_cover
from coreecg.evaluation.features import random_encoder
from coreecg.export import export_model
from coreecg.store import Store


def embed_torch(encoder, x, mask, std, batch: int) -> np.ndarray:
    spans = range(0, len(x), batch)
    return np.concatenate([encoder(x[s : s + batch], mask[s : s + batch], std[s : s + batch]).numpy() for s in spans])


def embed_onnx(session, x, mask, std, batch: int) -> np.ndarray:
    outputs = []
    for s in range(0, len(x), batch):
        feed = {"x": x[s : s + batch], "lead_mask": mask[s : s + batch], "record_std": std[s : s + batch]}
        outputs.append(session.run(None, feed)[0])
    return np.concatenate(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu", "tiny"])
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16, help="windows per batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "coreecg-bench-inputs"))
    parser.add_argument("--append")
    args = parser.parse_args()
    store = Store(synthetic_inputs(args.work, args.records))
    torch.set_grad_enabled(False)
    rows = []
    for preset in args.presets:
        encoder = random_encoder(preset, store, crop_seconds=5.0, seed=0, amplitude_token=True)
        windows = windows_to_cover(store.config.segment_seconds, encoder.crop_seconds)
        data = StoreDataset(store, mode="eval", crop_seconds=encoder.crop_seconds, windows=windows)
        batch = data[np.arange(len(data))]
        x = batch["signal"].reshape(-1, 12, batch["signal"].shape[-1])
        mask = batch["lead_mask"].repeat_interleave(windows, dim=0)
        std = batch["record_std"].repeat_interleave(windows, dim=0)
        with tempfile.TemporaryDirectory() as folder:
            encoder.save(folder + "/encoder")
            export_model(folder + "/encoder", folder + "/encoder.onnx")
            session = onnxruntime.InferenceSession(folder + "/encoder.onnx")
        x_np, mask_np, std_np = x.numpy(), mask.numpy(), std.numpy()
        torch_seconds, ours = timed(lambda: embed_torch(encoder, x, mask, std, args.batch), args.repeats)  # noqa: B023
        onnx_seconds, theirs = timed(lambda: embed_onnx(session, x_np, mask_np, std_np, args.batch), args.repeats)  # noqa: B023
        records = len(x) / windows
        rows.append(
            [
                preset,
                windows,
                f"{records / torch_seconds:.1f}",
                f"{records / onnx_seconds:.1f}",
                f"{torch_seconds / onnx_seconds:.2f}×",
                f"{float(np.abs(ours - theirs).max()):.1e}",
            ]
        )
        print(rows[-1], file=sys.stderr)
    body = (
        f"Input: {args.records} synthetic 10 s records at 100 Hz, 5 s windows, {args.batch} windows per batch; "
        f"random-init encoders with the amplitude token; onnxruntime {onnxruntime.__version__}; threads: "
        f"PyTorch {torch.get_num_threads()}, onnxruntime its default.\n\n"
    )
    headers = ["preset", "windows/record", "PyTorch records/s", "ONNX Runtime records/s", "ONNX / PyTorch", "max |Δg|"]
    body += table(headers, rows)
    publish("Exported encoder: ONNX Runtime against PyTorch", body, args.append)


if __name__ == "__main__":
    main()
