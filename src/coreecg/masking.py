"""Which patches the encoder sees: STDM and the baseline mask modes (docs/method.md §4).

Every function returns ``visible``, a B × 12 × N boolean grid (True = encoded). Absent leads are
never visible. Masked positions of present leads are the reconstruction targets. Exact counts are
drawn by ranking uniform noise, which needs no host synchronisation and no Python loop.
"""

from __future__ import annotations

import torch

MASK_MODES = ("stdm", "random", "per_lead", "time", "lead", "none")


def _ranks(noise: torch.Tensor) -> torch.Tensor:
    """Rank of each entry along the last dimension (0 = smallest)."""
    return noise.argsort(dim=-1).argsort(dim=-1)


def time_mask(batch: int, n_time: int, ratio: float, device, generator=None) -> torch.Tensor:
    """B × N: exactly ``round(ratio·N)`` masked time positions per sample (True = masked)."""
    n_masked = round(ratio * n_time)
    if n_masked >= n_time:
        raise ValueError(f"time mask ratio {ratio} masks all {n_time} time positions")
    noise = torch.rand(batch, n_time, device=device, generator=generator)
    return _ranks(noise) < n_masked


def lead_drop(lead_mask: torch.Tensor, probability: float, generator=None) -> torch.Tensor:
    """B × 12: present leads dropped whole with ``probability``; at least one present lead is kept."""
    b, leads = lead_mask.shape
    dropped = (torch.rand(b, leads, device=lead_mask.device, generator=generator) < probability) & lead_mask
    # Where every present lead was dropped, keep back one present lead chosen at random.
    everything = (dropped == lead_mask).all(1)
    noise = torch.rand(b, leads, device=lead_mask.device, generator=generator).masked_fill(~lead_mask, -1.0)
    rescue = torch.zeros_like(dropped).scatter_(1, noise.argmax(1, keepdim=True), True)
    return dropped & ~(rescue & everything[:, None])


def stdm(
    lead_mask: torch.Tensor, n_time: int, time_ratio: float = 0.5, lead_probability: float = 0.2, generator=None
) -> torch.Tensor:
    """Spatio-temporal dual masking: time positions masked in all leads at once, union whole dropped leads."""
    b = lead_mask.shape[0]
    masked_time = time_mask(b, n_time, time_ratio, lead_mask.device, generator)
    masked_lead = lead_drop(lead_mask, lead_probability, generator)
    masked = masked_time[:, None, :] | masked_lead[:, :, None]
    return ~masked & lead_mask[:, :, None]


def random_mask(lead_mask: torch.Tensor, n_time: int, ratio: float = 0.75, generator=None) -> torch.Tensor:
    """MAE: ``round(ratio·n)`` of each sample's n present tokens masked, anywhere in the grid."""
    b, leads = lead_mask.shape
    present = lead_mask[:, :, None].expand(-1, -1, n_time).reshape(b, -1)
    noise = torch.rand(b, leads * n_time, device=lead_mask.device, generator=generator).masked_fill(~present, 2.0)
    n_present = present.sum(1)
    n_keep = (n_present - torch.round(ratio * n_present).long()).clamp_min(1)
    return (_ranks(noise) < n_keep[:, None]).reshape(b, leads, n_time) & lead_mask[:, :, None]


def per_lead_mask(lead_mask: torch.Tensor, n_time: int, ratio: float = 0.75, generator=None) -> torch.Tensor:
    """ST-MEM: each present lead masks its own ``round(ratio·N)`` random time positions."""
    n_masked = round(ratio * n_time)
    if n_masked >= n_time:
        raise ValueError(f"mask ratio {ratio} masks all {n_time} time positions of a lead")
    b, leads = lead_mask.shape
    noise = torch.rand(b, leads, n_time, device=lead_mask.device, generator=generator)
    return (_ranks(noise) >= n_masked) & lead_mask[:, :, None]


def make_mask(
    mode: str,
    lead_mask: torch.Tensor,
    n_time: int,
    *,
    ratio: float,
    time_ratio: float,
    lead_probability: float,
    generator=None,
) -> torch.Tensor:
    """The visible grid for one view under ``mode`` (one of ``MASK_MODES``)."""
    if mode == "stdm":
        return stdm(lead_mask, n_time, time_ratio, lead_probability, generator)
    if mode == "time":
        return stdm(lead_mask, n_time, time_ratio, 0.0, generator)
    if mode == "lead":
        return stdm(lead_mask, n_time, 0.0, lead_probability, generator)
    if mode == "random":
        return random_mask(lead_mask, n_time, ratio, generator)
    if mode == "per_lead":
        return per_lead_mask(lead_mask, n_time, ratio, generator)
    if mode == "none":
        return lead_mask[:, :, None].expand(-1, -1, n_time).clone()
    raise ValueError(f"unknown mask mode {mode!r}; choose one of {', '.join(MASK_MODES)}")
