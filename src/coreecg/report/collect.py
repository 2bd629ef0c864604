"""What a report shows, read from run folders: training curves, reconstructions, embeddings, ROC data.

A pretraining run folder holds ``config.yaml``, ``metrics.jsonl`` and ``checkpoint.safetensors``; a
benchmark folder holds ``results.json`` and ``cells/``. ``find_runs`` locates both kinds in a
folder and one level below it (the demo writes ``pretrain/`` and ``benchmark/``; a benchmark keeps
its own pretraining runs under ``pretrain/``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from coreecg.config import read_yaml
from coreecg.dataset import StoreDataset
from coreecg.evaluation.benchmark import Cell, read_cell
from coreecg.evaluation.compare import read_results
from coreecg.evaluation.features import record_embeddings
from coreecg.losses import target_statistics
from coreecg.model import patchify
from coreecg.pretrain.config import resolve
from coreecg.pretrain.loop import CHECKPOINT, PICKLED_CHECKPOINT, read_metrics
from coreecg.pretrain.objective import CoReECG, make_views
from coreecg.pretrained import load_encoder
from coreecg.state_file import CONTENT_ERRORS, load_state, refuse_pickled, unusable
from coreecg.store import Store


@dataclass
class Runs:
    pretraining: list[str]
    benchmarks: list[str]


def _is_pretraining(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.yaml")) and os.path.isfile(os.path.join(path, "metrics.jsonl"))


def find_runs(folder: str) -> Runs:
    """Pretraining runs and benchmark folders in ``folder``, its children and grandchildren, sorted."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder")
    candidates = [folder]
    for root in (folder, *[os.path.join(folder, d) for d in sorted(os.listdir(folder))]):
        if os.path.isdir(root) and root != folder:
            candidates.append(root)
        sub = os.path.join(root, "pretrain")
        if os.path.isdir(sub):
            candidates += [os.path.join(sub, d) for d in sorted(os.listdir(sub))]
    pretraining = sorted({c for c in candidates if _is_pretraining(c)})
    benchmarks = sorted({c for c in candidates if os.path.isfile(os.path.join(c, "results.json"))})
    if not pretraining and not benchmarks:
        raise FileNotFoundError(
            f"{folder}: no pretraining run (config.yaml + metrics.jsonl) or benchmark "
            "(results.json) here or one level below"
        )
    return Runs(pretraining, benchmarks)


def training_rows(run: str) -> list[dict]:
    return read_metrics(os.path.join(run, "metrics.jsonl"))


def run_config(run: str) -> dict:
    return read_yaml(os.path.join(run, "config.yaml"))


def evaluation_store(config: dict) -> Store:
    store = config.get("data", {}).get("store") if isinstance(config.get("data"), dict) else None
    if isinstance(store, list) and store:
        store = store[0]
    if not isinstance(store, str) or not store:
        raise ValueError("the run's config names no store (data.store)")
    return Store(store)


def _eval_split(store: Store) -> list[str]:
    present = set(store.split)
    return ["val"] if "val" in present else sorted(present)[:1]


@torch.no_grad()
def reconstruction_examples(run: str, count: int = 2, seed: int = 0) -> dict | None:
    """Masked crops of validation segments, the model's reconstruction of the masked patches, and the truth.

    The loss predicts each patch's shape (per-patch normalized); the figure puts the prediction back
    on the true patch's offset and scale. None when the run has no decoder (contrastive only).
    """
    refuse_pickled(os.path.join(run, PICKLED_CHECKPOINT), CHECKPOINT)
    checkpoint = os.path.join(run, CHECKPOINT)
    if not os.path.isfile(checkpoint):
        return None
    state = load_state(checkpoint)
    try:
        config = resolve(state["config"])
        model = CoReECG(config)
        model.load_state_dict(state["model"])
    except CONTENT_ERRORS as error:
        raise unusable(checkpoint, "checkpoint", error) from None
    model.eval()
    if model.decoder is None:
        return None
    store = evaluation_store(state["config"])
    dataset = StoreDataset(store, mode="eval", windows=1, splits=_eval_split(store), amplitude=config.data.amplitude())
    picks = np.random.default_rng(seed).choice(len(dataset), size=min(count, len(dataset)), replace=False)
    batch = dataset[np.sort(picks)]
    signal, lead_mask = batch["signal"][:, 0], batch["lead_mask"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        views = make_views(signal, lead_mask, config, store.fs, batch["record_std"])
    encoded = [model.encoder(v.signal, v.visible, v.record_std) for v in views]
    view = views[0]
    n_time = view.visible.shape[-1]
    cond = encoded[1].g if config.objective.align else None
    prediction = model.decoder(encoded[0], lead_mask, n_time, cond)
    patches = patchify(view.target, config.model.patch)
    offset, scale = target_statistics(patches, config.objective.target, config.objective.target_eps)
    recon = prediction * scale + offset
    masked = (~view.visible & lead_mask[:, :, None]).reshape(len(lead_mask), -1)
    recon = torch.where(masked[..., None], recon, torch.full_like(recon, float("nan")))
    error = float((((patches - offset) / scale - prediction) ** 2)[masked].mean())
    b, leads, t = view.target.shape
    return {
        "target": view.target.numpy(),
        "recon": recon.reshape(b, leads, t).numpy(),
        "visible": view.visible.numpy(),
        "fs": store.fs,
        "patch": config.model.patch,
        "masked_mse": error,
        "step": int(state["step"]),
    }


def embedding_points(run: str, label_set: str | None = None, max_records: int = 2000, seed: int = 0) -> dict | None:
    """t-SNE of the run's encoder embeddings of validation records, grouped by their first positive class."""
    from sklearn.manifold import TSNE

    store = evaluation_store(run_config(run))
    names = store.label_set_names
    if not names:
        return None
    if label_set is None:  # the most widely labelled set, and of those the one with the fewest classes
        sets = [store.label_set(name) for name in names]
        label_set = min(sets, key=lambda s: (-int(s.labelled.sum()), len(s.classes))).name
    labels = store.label_set(label_set)
    rows = np.flatnonzero(np.isin(store.split, _eval_split(store)) & labels.labelled)
    if len(rows) < 10:
        return None
    if len(rows) > max_records:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_records, replace=False))
    x = record_embeddings(load_encoder(run), store, rows)
    points = TSNE(
        n_components=2, perplexity=min(30.0, (len(rows) - 1) / 3), init="pca", random_state=seed
    ).fit_transform((x - x.mean(0)) / (x.std(0) + 1e-6))
    matrix = labels.matrix[rows]
    groups = [labels.classes[int(np.argmax(row))] if row.any() else "none" for row in matrix]
    return {"points": points, "groups": groups, "label_set": label_set, "records": len(rows)}


def benchmark_roc_data(benchmark: str) -> list[dict]:
    """For each task, at its largest label fraction: validation labels and each row's seed-0 probabilities."""
    results = read_results(benchmark)
    store = Store(results["store"])
    cells = [Cell(**cell["cell"]) for cell in results["cells"].values()]
    first_seed = min(c.seed for c in cells)
    out = []
    for task in dict.fromkeys(c.task for c in cells):
        largest = max(c.fraction for c in cells if c.task == task)
        scores, rows = {}, None
        for c in cells:
            if (c.task, c.fraction, c.seed) == (task, largest, first_seed):
                arrays = read_cell(benchmark, c.name)[1]
                scores[c.row], rows = arrays["val"], arrays["val_rows"]
        labels = store.label_set(task)
        out.append(
            {
                "task": task,
                "fraction": largest,
                "classes": labels.classes,
                "labels": labels.matrix[rows],
                "scores": scores,
            }
        )
    return out
