"""The two pretraining losses as pure functions (docs/method.md §5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coreecg.distributed import all_reduce_mean, gather_with_grad, world


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between two views, with every sample of the global batch as a negative.

    ``z1[i]`` and ``z2[i]`` are the positives; under DDP each rank scores its rows against the
    views of all ranks (gathered with gradient), so B per rank on W ranks is the loss of one
    batch of W·B. Inputs need not be normalized.
    """
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
    rank, _ = world()
    targets = torch.arange(z1.shape[0], device=z1.device) + rank * z1.shape[0]
    loss_12 = F.cross_entropy(z1 @ all2.T / temperature, targets)
    loss_21 = F.cross_entropy(z2 @ all1.T / temperature, targets)
    return (loss_12 + loss_21) / 2


RECONSTRUCTION_TARGETS = ("patch", "raw")


def target_statistics(patches: torch.Tensor, kind: str, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset and scale that turn patches into the reconstruction target: ``(patches - offset) / scale``.

    ``patch``: each patch's own mean and sqrt(var + eps), so the decoder predicts shape, not offset
    or gain (MAE's normalized pixels). ``raw``: offset 0 and scale 1, so the record-normalized wave
    itself is predicted, ST-level offsets and QRS/T amplitudes included.
    """
    if kind == "raw":
        return torch.zeros_like(patches[..., :1]), torch.ones_like(patches[..., :1])
    if kind != "patch":
        raise ValueError(f"unknown reconstruction target {kind!r}; expected one of {', '.join(RECONSTRUCTION_TARGETS)}")
    mean = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True, unbiased=False)
    return mean, torch.sqrt(var + eps)


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6, kind: str = "patch") -> torch.Tensor:
    """The reconstruction target of ``patches`` (see ``target_statistics``)."""
    offset, scale = target_statistics(patches, kind, eps)
    return (patches - offset) / scale


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the patches where ``mask`` is True (B × L × P predictions, B × L mask).

    Under DDP the denominator is the mean masked count over ranks, so the ranks' average (what DDP
    applies) is the mean over every masked patch of the global batch, even when counts differ.
    """
    per_patch = (prediction.float() - target.float()).pow(2).mean(-1)
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / all_reduce_mean(weights.sum()).clamp_min(1.0)
