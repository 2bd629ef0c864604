"""Linear probes of one encoder with different evaluation window lengths, on 100 % of the train labels.

A research check (BENCHMARKS.md, "Probe window length"): does a rhythm statement that needs the
whole 10 s record (sinus arrhythmia, irregular RR) gain when the probe embeds one 10 s window
instead of two 5 s windows? The encoder is not retrained: its fixed sin-cos time embedding is
defined for up to 512 patches, though 5 s pretraining only used the first 20. Validation part
only, as every probe choice is.

    python experiments/probe-studies/probe_window_length.py ENCODER STORE --tasks rhythm super_class --crop-seconds 5 10
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from coreecg.dataset import windows_to_cover
from coreecg.evaluation.features import check_compatible, record_outputs
from coreecg.evaluation.probe import probe_selection
from coreecg.evaluation.selection import select
from coreecg.metrics import macro_auroc
from coreecg.model import crop_samples
from coreecg.pretrained import load_encoder
from coreecg.store import Store, StoreError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder", help="a saved encoder or pretraining run folder")
    parser.add_argument("store", help="a labelled store (e.g. coreecg prepare ptbxl-tables)")
    parser.add_argument("--tasks", nargs="+", default=["rhythm", "super_class"])
    parser.add_argument("--crop-seconds", nargs="+", type=float, default=[5.0, 10.0])
    parser.add_argument("--train", default="train")
    parser.add_argument("--val", default="val")
    args = parser.parse_args()

    try:
        encoder, store = load_encoder(args.encoder), Store(args.store)
        check_compatible(encoder.preprocessing, store)
        selections = {task: select(store, task, args.train, args.val) for task in args.tasks}
    except (OSError, ValueError, StoreError) as error:
        parser.error(str(error))
    rows = np.unique(np.concatenate([np.concatenate([s.train.rows, s.val.rows]) for s in selections.values()]))
    position = {int(r): i for i, r in enumerate(rows)}
    segment = store.config.segment_samples
    crops = {seconds: crop_samples(seconds, store.fs, encoder.encoder.config.patch) for seconds in args.crop_seconds}
    too_long = [f"{seconds:g} s" for seconds, crop in crops.items() if not 0 < crop <= segment]
    if too_long:
        parser.error(f"{args.store}: crops of {', '.join(too_long)} do not fit its {segment / store.fs:g} s segments")
    for seconds, crop in crops.items():
        start = time.perf_counter()
        features = record_outputs(encoder, encoder, store, rows, crop, amplitude=encoder.amplitude)

        def embed(chosen: np.ndarray, features: np.ndarray = features) -> np.ndarray:
            return features[[position[int(r)] for r in chosen]]

        for task, selection in selections.items():
            outcome = probe_selection(embed, selection)
            score = macro_auroc(selection.val.labels, outcome.val_probabilities, selection.val.classes)
            line = {
                "crop_seconds": seconds,
                "windows": windows_to_cover(segment, crop),
                "task": task,
                "val_macro_auroc": round(score.value, 4),
                "c": outcome.chosen["c"],
                "per_class": {name: round(value, 3) for name, value in score.per_class.items()},
                "seconds": round(time.perf_counter() - start),
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
