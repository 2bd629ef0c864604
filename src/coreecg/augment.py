"""View-making transforms, batched in torch on the training device: random crops, FDA, time-domain augmentations.

All functions take B × 12 × T signals and a B × 12 ``lead_mask`` (absent leads stay zero) and use
torch's global RNG unless a ``generator`` is given, so training is reproducible under a seed and
resumes exactly when the RNG state is restored.
"""

from __future__ import annotations

import math

import torch


def _uniform(shape, device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, device=device, generator=generator)


def random_crop(x: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """An independent random window of ``length`` samples per sample (one gather, no loop)."""
    b, leads, t = x.shape
    if length > t:
        raise ValueError(f"crop of {length} samples is longer than the {t}-sample input")
    if length == t:
        return x
    start = (_uniform(b, x.device, generator) * (t - length + 1)).long().clamp_(max=t - length)
    index = start[:, None] + torch.arange(length, device=x.device)[None, :]
    return x.gather(2, index[:, None, :].expand(-1, leads, -1))


def frequency_importance(spectrum: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
    """w_k in [0, 1]: bin amplitude averaged over present leads, divided by its maximum (B × F)."""
    weights = lead_mask.to(spectrum.real.dtype)[..., None]
    amplitude = (spectrum.abs() * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    return amplitude / amplitude.amax(dim=1, keepdim=True).clamp_min(1e-12)


def _across_bins(
    draw, b: int, n_bins: int, spacing: int, device, generator: torch.Generator | None, smooth: bool
) -> torch.Tensor:
    """A B × F draw, independent per bin (``spacing`` ≤ 1) or made at every ``spacing``-th bin.

    Between those control bins the values are linearly interpolated (``smooth``) or held (for drop
    decisions, which are yes/no): the draw then varies slowly across frequency.
    """
    if spacing <= 1:
        return draw((b, n_bins), device, generator)
    n_control = -(-(n_bins - 1) // spacing) + 1
    control = draw((b, n_control), device, generator)
    if not smooth:
        return control.repeat_interleave(spacing, dim=1)[:, :n_bins]
    span = (n_control - 1) * spacing + 1
    return torch.nn.functional.interpolate(control[:, None], size=span, mode="linear", align_corners=True)[
        :, 0, :n_bins
    ]


def _normal(shape, device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, device=device, generator=generator)


def frequency_dynamic_augmentation(
    x: torch.Tensor,
    lead_mask: torch.Tensor,
    strength_max: float,
    drop_rate: float = 0.0,
    strength: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    smooth_bins: int = 0,
    phase_scale: float = 1.0,
) -> torch.Tensor:
    """FDA (docs/method.md §3): perturb each frequency bin in proportion to how unimportant it is.

    Per sample a strength ``s ~ U(0, strength_max)`` (or the given ``strength``, shape B). Bin k gets
    gain ``max(0, 1 + s·(1 − w_k)·ε_k)``, phase shift ``phase_scale·s·(1 − w_k)·π·δ_k`` and is
    dropped with probability ``drop_rate·s·(1 − w_k)``; ε ~ N(0, 1), δ ~ U(−1, 1). One draw per
    sample and bin is shared by all leads, so linear lead relations (III = II − I, …) survive. The
    DC bin (and the Nyquist bin's phase) is kept, and strength 0 is exactly the identity.

    With ``smooth_bins`` > 1, ε, δ and the drops are drawn every ``smooth_bins`` bins and
    interpolated between: the perturbation is then a filter whose impulse response lasts about
    ``T / smooth_bins`` samples, so it reshapes waves where they are instead of spreading each
    bin's change over the whole crop (independent draws turn QRS energy into baseline activity
    that looks like fibrillation). ``phase_scale`` 0 keeps every wave in place (gain only).
    """
    b, _, t = x.shape
    work = x.float()
    spectrum = torch.fft.rfft(work, dim=-1)
    n_bins = spectrum.shape[-1]
    w = frequency_importance(spectrum, lead_mask)
    if strength is None:
        strength = _uniform(b, x.device, generator) * strength_max
    s = strength.to(work.dtype)[:, None] * (1.0 - w)  # B × F
    eps = _across_bins(_normal, b, n_bins, smooth_bins, x.device, generator, smooth=True)
    delta = _across_bins(_uniform, b, n_bins, smooth_bins, x.device, generator, smooth=True) * 2.0 - 1.0
    gain = (1.0 + s * eps).clamp_min(0.0)
    if drop_rate > 0:
        chance = _across_bins(_uniform, b, n_bins, smooth_bins, x.device, generator, smooth=False)
        gain = gain.masked_fill(chance < drop_rate * s, 0.0)
    phase = s * (phase_scale * math.pi) * delta
    gain[:, 0], phase[:, 0] = 1.0, 0.0
    if t % 2 == 0:
        phase[:, -1] = 0.0  # the Nyquist bin of a real signal has no phase to shift
    factor = torch.polar(gain, phase)[:, None, :]
    out = torch.fft.irfft(spectrum * factor, n=t, dim=-1)
    return (out * lead_mask[..., None].to(out.dtype)).to(x.dtype)


def time_domain_augmentation(
    x: torch.Tensor,
    lead_mask: torch.Tensor,
    fs: float,
    scale: float = 0.2,
    noise: float = 0.05,
    wander: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The plain augmentations FDA replaces (the ``no-fda`` ablation).

    Per sample: amplitude scaling by ``1 + U(−scale, scale)``; per lead Gaussian noise of std
    ``noise`` (in units of the normalized signal), which breaks lead relations as naive augmentation
    does; and baseline wander, a 0.05–0.5 Hz sinusoid of amplitude ``U(0, wander)``.
    """
    b, _, t = x.shape
    device = x.device
    gain = 1.0 + (_uniform((b, 1, 1), device, generator) * 2.0 - 1.0) * scale
    out = x * gain + torch.randn(x.shape, device=device, generator=generator).to(x.dtype) * noise
    freq = 0.05 + _uniform((b, 1, 1), device, generator) * 0.45
    phase = _uniform((b, 1, 1), device, generator) * 2 * math.pi
    amplitude = _uniform((b, 1, 1), device, generator) * wander
    seconds = torch.arange(t, device=device, dtype=torch.float32)[None, None, :] / fs
    out = out + (amplitude * torch.sin(2 * math.pi * freq * seconds + phase)).to(x.dtype)
    return out * lead_mask[..., None].to(out.dtype)
