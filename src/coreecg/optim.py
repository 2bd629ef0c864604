"""Optimizer settings shared by pretraining and fine-tuning: decay groups, layer-wise lr scales, the schedule."""

from __future__ import annotations

import math

import torch

NO_DECAY_NAMES = ("lead_embed", "mask_token", "cond_token")


def _decayed(name: str, p: torch.Tensor) -> bool:
    """Weight decay on matrices only; biases, norms and embeddings are not decayed."""
    return p.ndim >= 2 and not name.endswith(NO_DECAY_NAMES)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed matrices and everything else (no decay)."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if _decayed(name, p) else keep).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def encoder_layer(name: str, depth: int) -> int:
    """Layer index for layer-wise lr decay: embeddings 0, block i → i + 1, final norms and head depth + 1."""
    if name.startswith(("patch_embed", "lead_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_decay_groups(
    model: torch.nn.Module, encoder_prefix: str, depth: int, weight_decay: float, layer_decay: float
) -> list[dict]:
    """AdamW groups whose ``lr_scale`` is ``layer_decay ** (depth + 1 - layer)``: lower layers learn slower.

    Parameters outside ``encoder_prefix`` (the head) get scale 1. Decay follows ``parameter_groups``.
    """
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        inner = name[len(encoder_prefix) :] if name.startswith(encoder_prefix) else None
        layer = depth + 1 if inner is None else encoder_layer(inner, depth)
        decayed = _decayed(name, p)
        group = groups.setdefault(
            (layer, decayed),
            {
                "params": [],
                "weight_decay": weight_decay if decayed else 0.0,
                "lr_scale": layer_decay ** (depth + 1 - layer),
            },
        )
        group["params"].append(p)
    return [groups[key] for key in sorted(groups)]


def warmup_cosine(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    """Linear warmup to ``peak`` over ``warmup`` steps, then cosine decay to ``floor`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
