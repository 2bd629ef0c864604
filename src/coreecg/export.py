"""Deployable export: a trained encoder (or a fine-tuned classifier) as ONNX, for runtimes without PyTorch.

The ONNX model takes prepared, normalized crops and returns g (or class probabilities). Its input
contract, also written into the file's metadata (``coreecg.contract``):

- ``x``: float32, batch × 12 × ``crop_samples``: crops at the model's rate, band-passed as its store
  was, leads in the order I, II, III, aVR, aVL, aVF, V1–V6, each lead minus its record mean and the
  whole record over its std (``normalize_crops``); absent leads all zero. ``PretrainedEncoder.windows``
  cuts them exactly as the library does; a record's embedding is the mean of its windows' g.
- ``lead_mask``: bool, batch × 12, which leads the recording has.
- ``record_std``: float32, batch, each record's std in mV (what it was divided by); read only by an
  encoder with the amplitude token, but always an input so every export has one signature.

Inside, every patch position is a token and absent leads are masked out as attention keys and from
the mean, which gives the library's g (where absent leads are never tokenized) up to float rounding.
"""

from __future__ import annotations

import json
import os
import warnings

import torch
from torch import nn

from coreecg.leads import CANONICAL_LEADS, N_LEADS
from coreecg.model import ECGEncoder, patchify
from coreecg.pretrained import PretrainedEncoder

OPSET = 17


class GridEncoder(nn.Module):
    """An ``ECGEncoder`` on the full token grid with a key mask: static shapes, so it exports to ONNX."""

    def __init__(self, encoder: ECGEncoder, n_time: int):
        super().__init__()
        self.encoder, self.n_time = encoder, n_time
        lead = torch.arange(N_LEADS).repeat_interleave(n_time)
        time = torch.arange(n_time).repeat(N_LEADS)
        self.register_buffer("position", encoder.lead_embed.detach()[lead] + encoder.time_embed[time], persistent=False)

    def forward(self, x: torch.Tensor, lead_mask: torch.Tensor, record_std: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        tokens = e.patch_embed(patchify(x, e.config.patch)) + self.position
        valid = lead_mask.repeat_interleave(self.n_time, dim=1)
        if e.amplitude_embed is not None:
            tokens = torch.cat([tokens, e._amplitude_tokens(record_std, x.shape[0])], dim=1)
            valid = torch.cat([valid, torch.ones_like(valid[:, :1])], dim=1)
        for block in e.blocks:
            tokens = block(tokens, valid)
        tokens = e.norm(tokens)
        weights = valid.to(tokens.dtype)[..., None]
        return e.global_norm((tokens * weights).sum(1) / weights.sum(1))


class GridClassifier(nn.Module):
    """A fine-tuned classifier's probabilities through ``GridEncoder``."""

    def __init__(self, grid: GridEncoder, head: nn.Linear):
        super().__init__()
        self.grid, self.head = grid, head

    def forward(self, x: torch.Tensor, lead_mask: torch.Tensor, record_std: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.grid(x, lead_mask, record_std)))


def contract(pretrained: PretrainedEncoder, output: str, classes: list[str] | None = None) -> dict:
    """What the exported file expects and returns, for its metadata and for users."""
    p = pretrained.preprocessing
    return {
        "inputs": {
            "x": f"float32 batch x 12 x {pretrained.crop_samples}: normalized crops (see coreecg.export)",
            "lead_mask": "bool batch x 12",
            "record_std": "float32 batch, mV",
        },
        "output": output,
        "classes": classes,
        "rate_hz": p.fs,
        "band_hz": [p.band_low, p.band_high],
        "crop_samples": pretrained.crop_samples,
        "lead_order": list(CANONICAL_LEADS),
        "normalization": "each lead minus its record mean, the record over its std ("
        + ("per record" if pretrained.amplitude.scale_mv is None else f"amplitude {pretrained.amplitude.to_json()}")
        + ")",
        "amplitude_token": pretrained.encoder.config.amplitude_token,
    }


def export_onnx(model: nn.Module, pretrained: PretrainedEncoder, path: str, meta: dict) -> None:
    """Write ``model`` (a ``GridEncoder`` or ``GridClassifier``) as ONNX with a dynamic batch axis."""
    crop = pretrained.crop_samples
    example = (torch.zeros(2, N_LEADS, crop), torch.ones(2, N_LEADS, dtype=torch.bool), torch.full((2,), 0.2))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns that shapes become constants: they are (crop, leads, width), all but the batch.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            path,
            input_names=["x", "lead_mask", "record_std"],
            output_names=["output"],
            dynamic_axes={
                "x": {0: "batch"},
                "lead_mask": {0: "batch"},
                "record_std": {0: "batch"},
                "output": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    import onnx

    onnx_model = onnx.load(path)
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = "coreecg.contract", json.dumps(meta)
    onnx.save(onnx_model, path)


def export_model(spec: str, path: str) -> dict:
    """Export the encoder or classifier ``spec`` names (a folder, run folder or shipped name) to ``path``;
    the input contract goes into the file's metadata and beside it as ``path`` + ``.json``."""
    from coreecg.evaluation.classifier import CLASSIFIER_FORMAT, load_classifier
    from coreecg.files import write_json
    from coreecg.pretrained import CONFIG, encoder_location, load_encoder

    folder = encoder_location(spec)
    candidates = [os.path.join(folder, CONFIG), os.path.join(folder, "classifier", CONFIG)]
    is_classifier = any(_format_of(c) == CLASSIFIER_FORMAT for c in candidates)
    if is_classifier:
        saved = load_classifier(folder)
        pretrained = PretrainedEncoder(
            saved.model.encoder, saved.preprocessing, saved.crop_seconds, {}, saved.amplitude
        )
        grid = GridEncoder(saved.model.encoder, pretrained.crop_samples // saved.model.encoder.config.patch)
        model: nn.Module = GridClassifier(grid, saved.model.head)
        meta = contract(pretrained, "probabilities batch x classes (sigmoid)", saved.classes)
        meta["thresholds"] = saved.thresholds.tolist()
    else:
        pretrained = load_encoder(folder)
        model = GridEncoder(pretrained.encoder, pretrained.crop_samples // pretrained.encoder.config.patch)
        meta = contract(pretrained, f"g, float32 batch x {pretrained.dim}")
    export_onnx(model, pretrained, path, meta)
    write_json(path + ".json", meta)
    return meta


def _format_of(config_path: str) -> str | None:
    """The ``format`` a saved model's config.json declares, or None where there is no readable one."""
    from coreecg.files import read_json

    try:
        config = read_json(config_path)
    except (OSError, ValueError):
        return None
    return config.get("format") if isinstance(config, dict) else None
