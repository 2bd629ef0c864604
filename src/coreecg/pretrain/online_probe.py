"""A linear classifier trained on detached embeddings during pretraining, so quality is visible as it grows.

It never sends gradient into the encoder (inputs are detached) and has its own optimizer. Its
validation macro AUROC is a cheap, monotone-ish signal, not the reported probe (``coreecg probe``
fits a regularized logistic regression on frozen, window-averaged embeddings).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coreecg.dataset import StoreDataset
from coreecg.metrics import MacroAUROC, macro_auroc
from coreecg.model import ECGEncoder, evaluating


class OnlineProbe(nn.Module):
    def __init__(self, dim: int, classes: list[str], lr: float):
        super().__init__()
        self.classes = classes
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.linear = nn.Linear(dim, len(classes))
        self.optimizer = torch.optim.Adam(self.linear.parameters(), lr=lr)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(g.float()))

    def update(self, g: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor) -> float | None:
        """One Adam step on the labelled rows of a batch; returns the BCE loss (None if none labelled)."""
        if not bool(labelled.any()):
            return None
        logits = self(g.detach()[labelled])
        loss = F.binary_cross_entropy_with_logits(logits, labels[labelled].float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(
        self, encoder: ECGEncoder, dataset: StoreDataset, device: torch.device, batch_size: int = 128
    ) -> MacroAUROC:
        """Macro AUROC on ``dataset`` (eval mode: windows × crops), windows' g averaged per item."""
        scores, labels = [], []
        with evaluating(encoder):
            for batch in dataset.loader(batch_size, shuffle=False):
                x = batch["signal"].to(device)  # B × W × 12 × T
                b, w = x.shape[:2]
                mask = batch["lead_mask"].to(device).repeat_interleave(w, dim=0)
                record_std = batch["record_std"].to(device).repeat_interleave(w, dim=0)
                g = encoder.embed(x.flatten(0, 1), mask, record_std).view(b, w, -1).mean(1)
                scores.append(torch.sigmoid(self(g)).cpu().numpy())
                labels.append(batch["label"].numpy())
        return macro_auroc(np.concatenate(labels), np.concatenate(scores), self.classes)


def validation_subset(dataset: StoreDataset, max_records: int, seed: int) -> StoreDataset:
    """At most ``max_records`` items of ``dataset``, the same ones every evaluation (seeded)."""
    if len(dataset) <= max_records:
        return dataset
    order = np.random.default_rng(seed).permutation(len(dataset))[:max_records]
    dataset.segments = dataset.segments[np.sort(order)]
    return dataset
