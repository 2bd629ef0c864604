"""The plain way of computing CoRe-ECG, the baseline the benchmarks measure coreecg against.

Never imported by the library. The networks have coreecg's sizes and parameter names (a coreecg
state dict loads into them) and compute the same function, so a test can check that both give the
same losses and embeddings; only the *way* differs, as a straightforward implementation would do it:

- attention written out: ``softmax(q·kᵀ/√d + mask)·v``, no fused kernel;
- every grid position goes through the encoder: masked patches are zeroed, kept in the sequence
  and excluded as keys, instead of being dropped (so the encoder always works on 12·N tokens);
- the data path reads each record with ``wfdb.rdsamp`` in ``__getitem__`` and makes both views
  (crop, FDA, STDM) per item with NumPy in DataLoader worker processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import wfdb
from torch import nn
from torch.utils.data import Dataset

from coreecg.leads import N_LEADS
from coreecg.losses import info_nce, masked_mse, normalize_patches
from coreecg.model import TIME_EMBED_SCALE, DecoderConfig, EncoderConfig, crop_samples, sincos_embedding


class PlainAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        head = d // self.heads
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(head) + key_bias[:, None, None, :]
        y = scores.softmax(dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class PlainBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = PlainAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_bias)
        return x + self.mlp(self.norm2(x))


def key_bias(keep: torch.Tensor) -> torch.Tensor:
    """Additive attention bias: 0 where a key may be attended, -inf where not (B × L)."""
    return torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, float("-inf"))


class PlainEncoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.patch_embed = nn.Linear(config.patch, d)
        self.lead_embed = nn.Parameter(torch.randn(N_LEADS, d) * 0.02)
        self.register_buffer("time_embed", TIME_EMBED_SCALE * sincos_embedding(config.max_time_patches, d), False)
        self.blocks = nn.ModuleList(PlainBlock(d, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)
        self.global_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All 12·N grid tokens (masked ones computed too) and g pooled over the visible ones."""
        b, leads, t = x.shape
        n_time = t // self.config.patch
        patches = x.reshape(b, leads * n_time, self.config.patch)
        keep = visible.reshape(b, -1)
        patches = patches * keep[..., None].to(patches.dtype)  # masked content zeroed
        position = (self.lead_embed[:, None, :] + self.time_embed[None, :n_time, :]).reshape(leads * n_time, -1)
        tokens = self.patch_embed(patches) + position
        bias = key_bias(keep)
        for block in self.blocks:
            tokens = block(tokens, bias)
        tokens = self.norm(tokens)
        weights = keep[..., None].to(tokens.dtype)
        g = self.global_norm((tokens * weights).sum(1) / weights.sum(1))
        return tokens, g


class PlainDecoder(nn.Module):
    def __init__(self, encoder_dim: int, patch: int, config: DecoderConfig, max_time_patches: int):
        super().__init__()
        d = config.dim
        self.embed = nn.Linear(encoder_dim, d)
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)
        self.cond_proj = nn.Linear(encoder_dim, d)
        self.cond_token = nn.Parameter(torch.randn(d) * 0.02)
        self.lead_embed = nn.Parameter(torch.randn(N_LEADS, d) * 0.02)
        self.register_buffer("time_embed", sincos_embedding(max_time_patches, d), persistent=False)
        self.blocks = nn.ModuleList(PlainBlock(d, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, patch)

    def forward(self, tokens: torch.Tensor, visible: torch.Tensor, present: torch.Tensor, cond: torch.Tensor):
        b, leads, n_time = visible.shape
        keep = visible.reshape(b, -1, 1)
        grid = torch.where(keep, self.embed(tokens), self.mask_token)
        position = (self.lead_embed[:, None, :] + self.time_embed[None, :n_time, :]).reshape(leads * n_time, -1)
        grid = torch.cat([(self.cond_proj(cond) + self.cond_token)[:, None, :], grid + position], dim=1)
        present_grid = present[:, :, None].expand(-1, -1, n_time).reshape(b, -1)
        bias = key_bias(torch.cat([torch.ones(b, 1, dtype=torch.bool, device=grid.device), present_grid], 1))
        for block in self.blocks:
            grid = block(grid, bias)
        return self.head(self.norm(grid))[:, 1:]


class PlainCoReECG(nn.Module):
    """The full objective (contrastive + conditioned reconstruction), parameter names as ``CoReECG``."""

    def __init__(
        self,
        encoder: EncoderConfig,
        decoder: DecoderConfig,
        projection_hidden: int,
        projection_dim: int,
        lambda_con: float,
        temperature: float,
        target_eps: float,
    ):
        super().__init__()
        self.encoder = PlainEncoder(encoder)
        self.decoder = PlainDecoder(encoder.dim, encoder.patch, decoder, encoder.max_time_patches)
        self.projector = nn.Module()
        self.projector.net = nn.Sequential(
            nn.Linear(encoder.dim, projection_hidden), nn.GELU(), nn.Linear(projection_hidden, projection_dim)
        )
        self.lambda_con, self.temperature, self.target_eps = lambda_con, temperature, target_eps

    @classmethod
    def like(cls, config) -> PlainCoReECG:
        """The reference for a coreecg ``PretrainConfig`` (full objective only)."""
        o = config.objective
        if not (o.contrastive and o.reconstruct and o.align) or o.target != "patch":
            raise ValueError("the reference implements the full objective with per-patch targets only")
        if config.model.amplitude_token:
            raise ValueError("the reference has no amplitude token: compare with model.amplitude_token=false")
        m = config.model
        return cls(
            m.encoder(), m.decoder(), m.projection_hidden, m.projection_dim, o.lambda_con, o.temperature, o.target_eps
        )

    def forward(self, signals, targets, visibles, lead_mask) -> dict[str, torch.Tensor]:
        """Views as lists of two: augmented signals, unaugmented targets, visible grids."""
        encoded = [self.encoder(x, v) for x, v in zip(signals, visibles, strict=True)]
        z = [self.projector.net(g) for _, g in encoded]
        con = info_nce(z[0], z[1], self.temperature)
        rec = []
        for i in range(2):
            tokens, _ = encoded[i]
            prediction = self.decoder(tokens, visibles[i], lead_mask, encoded[1 - i][1])
            b, leads, t = targets[i].shape
            patch = self.encoder.config.patch
            target = normalize_patches(targets[i].reshape(b, leads * (t // patch), patch), self.target_eps)
            masked = (~visibles[i] & lead_mask[:, :, None]).reshape(b, -1)
            rec.append(masked_mse(prediction, target, masked))
        rec_mean = (rec[0] + rec[1]) / 2
        return {"loss": rec_mean + self.lambda_con * con, "rec": rec_mean, "con": con}

    def embed(self, x: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        n_time = x.shape[-1] // self.encoder.config.patch
        return self.encoder(x, lead_mask[:, :, None].expand(-1, -1, n_time))[1]


# --- the data path: per-item WFDB reads, views made per item on the CPU in workers ---------------


@dataclass
class ViewSettings:
    crop: int  # samples
    patch: int
    fda_strength: float
    fda_drop: float
    time_ratio: float
    lead_probability: float

    @classmethod
    def like(cls, config, fs: float) -> ViewSettings:
        """The view settings of a coreecg ``PretrainConfig``."""
        patch = config.model.patch
        return cls(
            crop_samples(config.data.crop_seconds, fs, patch),
            patch,
            config.augment.fda_strength,
            config.augment.fda_drop,
            config.mask.time_ratio,
            config.mask.lead_probability,
        )


def fda_numpy(x: np.ndarray, strength_max: float, drop_rate: float, rng: np.random.Generator) -> np.ndarray:
    """FDA of one 12 × T crop (coreecg.augment.frequency_dynamic_augmentation, one item at a time)."""
    t = x.shape[-1]
    spectrum = np.fft.rfft(x, axis=-1)
    amplitude = np.abs(spectrum).mean(0)
    w = amplitude / max(amplitude.max(), 1e-12)
    s = rng.uniform(0, strength_max) * (1.0 - w)
    gain = np.clip(1.0 + s * rng.standard_normal(len(w)), 0.0, None)
    gain[rng.uniform(size=len(w)) < drop_rate * s] = 0.0
    phase = s * math.pi * rng.uniform(-1, 1, len(w))
    gain[0], phase[0] = 1.0, 0.0
    if t % 2 == 0:
        phase[-1] = 0.0
    return np.fft.irfft(spectrum * gain * np.exp(1j * phase), n=t, axis=-1).astype(np.float32)


def stdm_numpy(n_time: int, time_ratio: float, lead_probability: float, rng: np.random.Generator) -> np.ndarray:
    """STDM of one 12-lead item: a visible 12 × N grid."""
    masked_time = np.zeros(n_time, dtype=bool)
    masked_time[rng.permutation(n_time)[: round(time_ratio * n_time)]] = True
    dropped = rng.uniform(size=N_LEADS) < lead_probability
    if dropped.all():
        dropped[rng.integers(N_LEADS)] = False
    return ~(masked_time[None, :] | dropped[:, None])


class WfdbViewsDataset(Dataset):
    """Reads record ``i`` with wfdb.rdsamp and returns its two views, as a plain dataset would."""

    def __init__(self, paths: list[str], settings: ViewSettings, seed: int = 0):
        self.paths, self.settings, self.seed = paths, settings, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.settings
        rng = np.random.default_rng([self.seed, i, torch.randint(1 << 30, ()).item()])
        signal, _ = wfdb.rdsamp(self.paths[i])
        x = signal.T.astype(np.float32)
        x = np.nan_to_num(x - x.mean(axis=1, keepdims=True)) / (np.nanstd(x) + 1e-6)
        out = {}
        for v in range(2):
            start = rng.integers(0, x.shape[1] - s.crop + 1)
            target = np.ascontiguousarray(x[:, start : start + s.crop])
            out[f"signal{v}"] = torch.from_numpy(fda_numpy(target, s.fda_strength, s.fda_drop, rng))
            out[f"target{v}"] = torch.from_numpy(target)
            visible = stdm_numpy(s.crop // s.patch, s.time_ratio, s.lead_probability, rng)
            out[f"visible{v}"] = torch.from_numpy(visible)
        out["lead_mask"] = torch.ones(N_LEADS, dtype=torch.bool)
        return out


def batch_views(batch: dict[str, torch.Tensor]) -> tuple[list, list, list, torch.Tensor]:
    """The lists ``PlainCoReECG.forward`` takes, from a collated ``WfdbViewsDataset`` batch."""
    return (
        [batch["signal0"], batch["signal1"]],
        [batch["target0"], batch["target1"]],
        [batch["visible0"], batch["visible1"]],
        batch["lead_mask"],
    )


def plain_step(model: PlainCoReECG, optimizer: torch.optim.Optimizer, signals, targets, visibles, lead_mask) -> float:
    """One training step of the reference: forward, backward, AdamW."""
    loss = model(signals, targets, visibles, lead_mask)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
