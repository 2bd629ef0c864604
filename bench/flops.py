"""Analytic FLOPs of a CoRe-ECG training step and the machine's measured matrix-multiply peak.

Counts matrix multiplies only (2 FLOPs per multiply-add), which is what MFU conventionally uses:
per transformer block over L tokens of width D with MLP ratio 4, ``24·L·D²`` for the projections
and MLP plus ``4·L²·D`` for attention scores and their weighted sum. A training step costs three
forward passes (backward ≈ 2×).
"""

from __future__ import annotations

import time

import torch

from coreecg.leads import N_LEADS
from coreecg.pretrain.config import PretrainConfig


def block_flops(tokens: float, dim: int, mlp_ratio: float) -> float:
    return tokens * dim * dim * (8 + 4 * mlp_ratio) + 4 * tokens * tokens * dim


def encoder_flops(config, tokens: float) -> float:
    """Forward matmul FLOPs of the encoder over ``tokens`` tokens (patch embedding + blocks)."""
    return 2 * tokens * config.patch * config.dim + config.depth * block_flops(tokens, config.dim, config.mlp_ratio)


def training_flops_per_sample(config: PretrainConfig, visible_tokens: float, n_time: int) -> float:
    """Matmul FLOPs of one training step per sample (two views), given the mean visible tokens per view."""
    enc, dec = config.model.encoder(), config.model.decoder()
    forward = 0.0
    for _ in range(2):  # two views
        forward += encoder_flops(enc, visible_tokens)
        if config.objective.reconstruct:
            grid = N_LEADS * n_time + (1 if config.objective.align else 0)
            forward += 2 * visible_tokens * enc.dim * dec.dim
            forward += dec.depth * block_flops(grid, dec.dim, dec.mlp_ratio)
            forward += 2 * grid * dec.dim * enc.patch
        if config.objective.contrastive:
            m = config.model
            forward += 2 * (enc.dim * m.projection_hidden + m.projection_hidden * m.projection_dim)
    return 3 * forward


def matmul_peak(dtype: torch.dtype, device: str = "cpu", size: int = 2048, seconds: float = 2.0) -> float:
    """Sustained FLOP/s of a square matrix multiply (the best of a few timed rounds)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, 5 * 2 * size**3 / (time.perf_counter() - start))
    return best


PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_peaks(precisions: list[str], device: str = "cpu") -> dict[str, float]:
    """``matmul_peak`` for each named precision ("fp32", "bf16"), so MFU is taken at the precision that ran."""
    return {precision: matmul_peak(PRECISION_DTYPES[precision], device) for precision in precisions}
