"""The report's figures as inline SVG text (matplotlib, Agg backend): no files beside report.html.

Each function takes plain arrays, so the figures are the same whether they come from the demo,
a pretraining run on real data or a benchmark folder.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import auc, roc_curve

from coreecg.leads import CANONICAL_LEADS

PALETTE = plt.get_cmap("tab10").colors


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG goes inline into HTML


def training_curves(rows: Sequence[dict]) -> str:
    """Losses, learning rate and the online probe's validation AUROC against the step."""
    steps = np.array([r["step"] for r in rows])
    panels = [("loss", "total loss"), ("rec", "reconstruction (masked MSE)"), ("con", "InfoNCE")]
    panels = [(k, t) for k, t in panels if any(k in r for r in rows)]
    probe = [(r["step"], r["probe_auroc"]) for r in rows if "probe_auroc" in r]
    count = len(panels) + (1 if probe else 0) + 1
    figure, axes = plt.subplots(1, count, figsize=(3.6 * count, 2.8))
    for ax, (key, title) in zip(axes, panels, strict=False):
        values = [r.get(key, np.nan) for r in rows]
        ax.plot(steps, values, color=PALETTE[0], lw=1.4)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
    index = len(panels)
    if probe:
        s, v = zip(*probe, strict=True)
        axes[index].plot(s, v, "o-", color=PALETTE[2], lw=1.4)
        axes[index].set_title("online probe, validation macro AUROC", fontsize=10)
        axes[index].set_xlabel("step")
        index += 1
    axes[index].plot(steps, [r.get("lr", np.nan) for r in rows], color=PALETTE[7], lw=1.2)
    axes[index].set_title("learning rate", fontsize=10)
    axes[index].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return _svg(figure)


def reconstruction(
    target: np.ndarray,
    recon: np.ndarray,
    visible: np.ndarray,
    fs: float,
    patch: int,
    leads: Sequence[int] = (0, 1, 6, 9, 11),
) -> str:
    """One crop: each chosen lead's truth, its masked patches shaded, and the reconstruction drawn in them."""
    t = np.arange(target.shape[-1]) / fs
    figure, axes = plt.subplots(len(leads), 1, figsize=(9.5, 1.25 * len(leads)), sharex=True)
    for ax, lead in zip(axes, leads, strict=True):
        for k, shown in enumerate(visible[lead]):
            if not shown:
                ax.axvspan(k * patch / fs, (k + 1) * patch / fs, color="#f2d7d5", lw=0)
        ax.plot(t, target[lead], color="#222222", lw=1.0, label="truth")
        ax.plot(t, recon[lead], color=PALETTE[3], lw=1.3, label="reconstruction (masked patches)")
        ax.set_ylabel(CANONICAL_LEADS[lead], rotation=0, labelpad=14, fontsize=9)
        ax.set_yticks([])
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    axes[0].legend(loc="upper right", fontsize=8, frameon=False, ncol=2)
    axes[-1].set_xlabel("seconds (shaded: masked, never seen by the encoder)")
    figure.tight_layout(h_pad=0.2)
    return _svg(figure)


def embedding_map(points: np.ndarray, groups: Sequence[str], title: str) -> str:
    """A 2-D map of record embeddings, one colour per group; beyond nine groups, the rarest become "other"."""
    figure, ax = plt.subplots(figsize=(6.4, 5.2))
    groups = np.asarray(groups, dtype=object)
    names, counts = np.unique(groups, return_counts=True)
    if len(names) > 9:
        kept = set(names[np.argsort(-counts, kind="stable")[:9]])
        groups = np.array([g if g in kept else "other" for g in groups], dtype=object)
    names = sorted(set(groups), key=lambda g: (g in ("none", "other"), g))
    for i, name in enumerate(names):
        chosen = groups == name
        ax.scatter(
            points[chosen, 0],
            points[chosen, 1],
            s=7,
            alpha=0.75,
            color=PALETTE[i % 10],
            label=f"{name} ({int(chosen.sum())})",
            linewidths=0,
        )
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=2.5, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    return _svg(figure)


def roc_curves(
    labels: np.ndarray, scores_by_method: dict[str, np.ndarray], classes: Sequence[str], max_classes: int = 12
) -> str:
    """Per-class ROC curves, one line per method, for the classes with the most positives."""
    positives = labels.sum(0)
    order = [j for j in np.argsort(-positives, kind="stable") if 0 < positives[j] < len(labels)][:max_classes]
    columns = min(4, len(order))
    rows = -(-len(order) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.9 * rows), squeeze=False)
    for ax, j in zip(axes.flat, order, strict=False):
        for i, (method, scores) in enumerate(scores_by_method.items()):
            fpr, tpr, _ = roc_curve(labels[:, j], scores[:, j])
            area = auc(fpr, tpr)
            ax.plot(fpr, tpr, color=PALETTE[i % 10], lw=1.4, label=f"{method}: {area:.3f}")
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
        ax.set_title(f"{classes[j]} ({int(positives[j])} positive)", fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.set_ylabel("true positive rate", fontsize=8)
    for ax in list(axes.flat)[len(order) :]:
        ax.axis("off")
    figure.tight_layout()
    return _svg(figure)
