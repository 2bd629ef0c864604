"""The CoRe-ECG objective: two views per record, contrastive on g, reconstruction conditioned on the other view.

``make_views`` turns a batch of segments into two independently cropped, augmented and masked
views (all on the training device). ``CoReECG`` scores them: ``L = L_rec + λ·L_con`` (docs/method.md §5).
Keeping the two apart means the loss is a deterministic function of the views, which is what the
DDP-equivalence test feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from coreecg.augment import frequency_dynamic_augmentation, random_crop, time_domain_augmentation
from coreecg.leads import N_LEADS
from coreecg.losses import info_nce, masked_mse, normalize_patches
from coreecg.masking import make_mask
from coreecg.model import ECGEncoder, Encoded, ProjectionHead, ReconstructionDecoder, crop_samples, patchify
from coreecg.pretrain.config import PretrainConfig


@dataclass
class View:
    signal: torch.Tensor  # B × 12 × T, augmented: what the encoder sees
    target: torch.Tensor  # B × 12 × T, the same crop before augmentation: what is reconstructed
    visible: torch.Tensor  # B × 12 × N
    record_std: torch.Tensor | None = None  # B, mV: what the encoder's amplitude token is given


def make_views(
    signal: torch.Tensor,
    lead_mask: torch.Tensor,
    config: PretrainConfig,
    fs: float,
    record_std: torch.Tensor | None = None,
) -> list[View]:
    """Two views of each segment: a random crop each (one for both with ``data.shared_crop``), FDA
    (or time-domain augmentation), mask.

    ``record_std`` (B, mV) goes with each view for an amplitude token, jittered per view when
    ``augment.amplitude_jitter`` is set.
    """
    patch = config.model.patch
    crop = crop_samples(config.data.crop_seconds, fs, patch)
    aug, mask = config.augment, config.mask
    views = []
    shared = random_crop(signal, crop) if config.data.shared_crop else None
    for _ in range(2):
        target = shared if shared is not None else random_crop(signal, crop)
        if aug.fda:
            augmented = frequency_dynamic_augmentation(
                target,
                lead_mask,
                aug.fda_strength,
                aug.fda_drop,
                smooth_bins=round(aug.fda_smooth_hz * crop / fs),  # bins are fs / crop Hz apart
                phase_scale=aug.fda_phase,
            )
        else:
            augmented = time_domain_augmentation(
                target, lead_mask, fs, scale=aug.time_scale, noise=aug.time_noise, wander=aug.time_wander
            )
        visible = make_mask(
            mask.mode,
            lead_mask,
            crop // patch,
            ratio=mask.ratio,
            time_ratio=mask.time_ratio,
            lead_probability=mask.lead_probability,
        )
        amplitude = record_std
        if record_std is not None and config.model.amplitude_token and aug.amplitude_jitter:  # only the token sees it
            noise = torch.randn(record_std.shape, device=record_std.device)
            amplitude = record_std * torch.exp(aug.amplitude_jitter * noise)
        views.append(View(augmented, target, visible, amplitude))
    return views


class CoReECG(nn.Module):
    """Encoder + (decoder) + (projection head), and the joint loss over two views."""

    def __init__(self, config: PretrainConfig):
        super().__init__()
        self.config = config
        encoder_config = config.model.encoder()
        self.encoder = ECGEncoder(encoder_config)
        objective = config.objective
        self.projector = (
            ProjectionHead(encoder_config.dim, config.model.projection_hidden, config.model.projection_dim)
            if objective.contrastive
            else None
        )
        if not objective.contrastive:  # g is then never trained; frozen so DDP sees no unused parameter
            self.encoder.global_norm.requires_grad_(False)
        self.decoder = (
            ReconstructionDecoder(
                encoder_config.dim,
                encoder_config.patch,
                config.model.decoder(),
                encoder_config.max_time_patches,
                conditioned=objective.align,
            )
            if objective.reconstruct
            else None
        )

    def forward(self, views: list[View], lead_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses (``loss`` is what is optimized) and the views' global representations ``g``."""
        objective = self.config.objective
        encoded = [self.encoder(view.signal, view.visible, view.record_std) for view in views]
        out: dict[str, torch.Tensor] = {"g": torch.stack([e.g for e in encoded]).detach()}
        loss = torch.zeros((), device=lead_mask.device)
        if self.projector is not None:
            z = [self.projector(e.g) for e in encoded]
            out["con"] = info_nce(z[0], z[1], objective.temperature)
            loss = loss + objective.lambda_con * out["con"]
        if self.decoder is not None:
            rec = [
                self.reconstruction_loss(view, enc, lead_mask, encoded[1 - i].g if objective.align else None)
                for i, (view, enc) in enumerate(zip(views, encoded, strict=True))
            ]
            out["rec"] = (rec[0] + rec[1]) / 2
            loss = loss + out["rec"]
        out["loss"] = loss
        return out

    def reconstruction_loss(
        self, view: View, encoded: Encoded, lead_mask: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        """MSE on the masked patches of present leads of one view, its decoder conditioned on ``cond``.

        ``cond`` is the other view's g in training; ``experiments/alignment/alignment_use.py`` swaps in other
        vectors to measure how much the decoder relies on it.
        """
        if self.decoder is None:
            raise ValueError("this objective has no decoder (objective.reconstruct is false)")
        n_time = view.visible.shape[-1]
        prediction = self.decoder(encoded, lead_mask, n_time, cond)
        objective = self.config.objective
        patches = patchify(view.target, self.config.model.patch)
        target = normalize_patches(patches, objective.target_eps, objective.target)
        masked = (~view.visible & lead_mask[:, :, None]).reshape(len(lead_mask), N_LEADS * n_time)
        return masked_mse(prediction, target, masked)
