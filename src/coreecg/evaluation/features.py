"""Record embeddings from a store: g (or g and time statistics) of evenly spaced windows, averaged per record.

The probe, ``coreecg embed`` and the benchmark all call ``record_embeddings``; the random-init
baseline is an untrained encoder wrapped exactly like a trained one, so both go through one path.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from coreecg.dataset import PER_RECORD, Amplitude, StoreDataset, windows_to_cover
from coreecg.model import ENCODER_PRESETS, ECGEncoder, EncoderConfig, evaluating
from coreecg.preprocess import PrepConfig
from coreecg.pretrained import PretrainedEncoder, eval_batch_records
from coreecg.store import Store

# Preprocessing settings that change what the encoder sees; the others (segment length, quality
# thresholds, storage dtype) may differ between the pretraining store and an evaluation store.
SIGNAL_SETTINGS = ("fs", "band_low", "band_high", "filter_order")


def check_compatible(preprocessing: PrepConfig, store: Store) -> None:
    """Refuse a store whose signals differ from the ones a model was trained on."""
    trained, here = preprocessing.to_dict(), store.config.to_dict()
    differ = [
        f"{key} {trained[key]} (model) vs {here[key]} (store)" for key in SIGNAL_SETTINGS if trained[key] != here[key]
    ]
    if differ:
        raise ValueError(
            f"{store.path}: prepared differently from the model's training data: {'; '.join(differ)}. "
            "Prepare the store again with the model's settings (see its config.json)."
        )


def random_encoder(
    preset: str,
    store: Store,
    crop_seconds: float,
    seed: int,
    patch: int = 25,
    amplitude: Amplitude = PER_RECORD,
    amplitude_token: bool = False,
) -> PretrainedEncoder:
    """An untrained encoder of a named size (the random-init baseline), seeded, for this store's signals.

    ``amplitude_token``: built with the record-amplitude token, the baseline for encoders trained with one.
    """
    if preset not in ENCODER_PRESETS:
        raise ValueError(f"unknown encoder preset {preset!r} (known: {', '.join(ENCODER_PRESETS)})")
    config = EncoderConfig(patch=patch, amplitude_token=amplitude_token, **ENCODER_PRESETS[preset])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ECGEncoder(config)
    info = {"random_init": preset, "seed": seed}
    return PretrainedEncoder(encoder, store.config, crop_seconds, info, amplitude).eval()


def evaluation_dataset(
    store: Store,
    crop_samples: int,
    rows: Sequence[int] | np.ndarray,
    leads: str | None = None,
    amplitude: Amplitude = PER_RECORD,
) -> StoreDataset:
    """Every segment of ``rows`` in evaluation mode: windows of ``crop_samples`` covering each segment,
    normalized as the model was trained (``amplitude``)."""
    segment = store.config.segment_samples
    return StoreDataset(
        store,
        mode="eval",
        crop_seconds=crop_samples / store.fs,
        windows=windows_to_cover(segment, crop_samples),
        records=rows,
        leads=leads,
        amplitude=amplitude,
    )


EMBEDDING_PRECISIONS = ("fp32", "bf16")


def inference_precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context an evaluation forward pass runs in: fp32 as is, or bf16 autocast.

    fp32 is the default everywhere (probe features and tuned thresholds must not depend on the
    device); bf16 is an opt-in for bulk embedding, several times faster on GPUs and on CPUs with AMX
    (bench/bench_embed.py --precision bf16: 3x on a CPU with AMX, g within about 1e-2).
    """
    if precision not in EMBEDDING_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(EMBEDDING_PRECISIONS)})")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def average_by_record(values: np.ndarray, owners: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (items × K) per record, in the order of ``rows``."""
    position = {int(r): i for i, r in enumerate(rows)}
    where = np.fromiter((position[int(o)] for o in owners), dtype=np.int64, count=len(owners))
    total = np.zeros((len(rows), values.shape[1]), dtype=np.float64)
    np.add.at(total, where, values)
    counts = np.bincount(where, minlength=len(rows))[:, None]
    if (counts == 0).any():
        raise ValueError("a record has no segment in the store")
    return (total / counts).astype(np.float32)


@torch.no_grad()
def record_outputs(
    module: nn.Module,
    output: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    store: Store,
    rows: Sequence[int] | np.ndarray,
    crop: int,
    leads: str | None = None,
    batch_size: int | None = None,
    amplitude: Amplitude = PER_RECORD,
    precision: str = "fp32",
) -> np.ndarray:
    """``output(crops, lead_mask, record_std)`` of ``module`` (in eval mode) for every window of every record
    in ``rows``, averaged per record: len(rows) × K, in the order of ``rows``. ``batch_size`` is in records (default:
    ``eval_batch_records`` for the module's device); ``precision``: see ``inference_precision``."""
    rows = np.asarray(rows, dtype=np.int64)
    device = next(module.parameters()).device
    batch_size = batch_size or eval_batch_records(device)
    outputs, owners = [], []
    with evaluating(module), inference_precision(device, precision):
        for batch in evaluation_dataset(store, crop, rows, leads, amplitude).loader(batch_size, shuffle=False):
            x = batch["signal"].to(device)  # B × W × 12 × T
            b, w = x.shape[:2]
            mask = batch["lead_mask"].to(device).repeat_interleave(w, dim=0)
            record_std = batch["record_std"].to(device).repeat_interleave(w, dim=0)
            out = output(x.flatten(0, 1), mask, record_std)
            outputs.append(out.float().view(b, w, -1).mean(1).cpu().numpy())
            owners.append(batch["record"].numpy())
    return average_by_record(np.concatenate(outputs), np.concatenate(owners), rows)


def record_embeddings(
    encoder: PretrainedEncoder,
    store: Store,
    rows: Sequence[int] | np.ndarray,
    leads: str | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    features: str = "g",
) -> np.ndarray:
    """Embedding of every record in ``rows`` (same order): ``features`` of each window, averaged over all
    its windows. ``features="g"``: len(rows) × D; ``"g+time"``: × 3·D; ``"g+time+change"``: × 4·D
    (``ECGEncoder.embed``, which also refuses an unknown name).

    ``precision="bf16"`` trades about 1e-2 of absolute error in g for speed (``inference_precision``).
    """
    check_compatible(encoder.preprocessing, store)
    output = functools.partial(encoder, features=features)
    return record_outputs(
        encoder, output, store, rows, encoder.crop_samples, leads, batch_size, encoder.amplitude, precision
    )
