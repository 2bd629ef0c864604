"""A fine-tuned classifier (encoder + linear head) on disk and in use: save, load, per-record probabilities.

Folder layout: ``model.safetensors`` (``encoder.*`` and ``head.*``) and ``config.json`` (encoder
size, the store preprocessing it expects, crop length, task, classes, leads, and the per-class
thresholds tuned on validation). ``predict_store`` and ``predict_folder`` give one row per record.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from torch import nn

from coreecg.dataset import PER_RECORD, Amplitude
from coreecg.evaluation.features import check_compatible, record_outputs
from coreecg.files import write_atomically, write_json
from coreecg.model import ECGEncoder, EncoderConfig, crop_samples
from coreecg.preprocess import PrepConfig
from coreecg.pretrained import CONFIG, WEIGHTS, PretrainedEncoder, load_weights, read_model_config, saved_settings
from coreecg.store import EmptyStoreError, Store
from coreecg.version import __version__

CLASSIFIER_FORMAT = "coreecg-classifier"


class Classifier(nn.Module):
    """Logits of every class from g of a crop (B × 12 × T, lead mask B × 12 → B × classes)."""

    def __init__(self, encoder: ECGEncoder, classes: Sequence[str]):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, len(classes))
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        self.classes = list(classes)

    def forward(self, x: torch.Tensor, lead_mask: torch.Tensor, record_std: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder.embed(x, lead_mask, record_std))

    def probabilities(
        self, x: torch.Tensor, lead_mask: torch.Tensor, record_std: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.sigmoid(self(x, lead_mask, record_std).float())


def classifier_from_encoder(pretrained: PretrainedEncoder, classes: Sequence[str], drop_path: float) -> Classifier:
    """A classifier whose encoder starts from ``pretrained``'s weights, with stochastic depth ``drop_path``."""
    config = EncoderConfig(**{**pretrained.encoder.config.to_dict(), "drop_path": drop_path})
    encoder = ECGEncoder(config)
    encoder.load_state_dict(pretrained.encoder.state_dict())
    return Classifier(encoder, classes)


class SavedClassifier:
    """A loaded classifier with the settings it needs to be applied as it was validated."""

    def __init__(
        self, model: Classifier, preprocessing: PrepConfig, crop_seconds: float, amplitude: Amplitude, info: dict
    ):
        self.model = model.eval()
        self.preprocessing = preprocessing
        self.crop_seconds = crop_seconds
        self.amplitude = amplitude  # the encoder's amplitude normalization
        self.info = info
        self.classes: list[str] = list(info["classes"])
        self.thresholds = np.asarray(info["thresholds"], dtype=np.float64)
        self.leads: str | None = info.get("leads")

    @property
    def crop_samples(self) -> int:
        return crop_samples(self.crop_seconds, self.preprocessing.fs, self.model.encoder.config.patch)


def save_classifier(
    model: Classifier,
    folder: str,
    preprocessing: PrepConfig,
    crop_seconds: float,
    amplitude: Amplitude,
    info: dict,
) -> None:
    """Weights, then config (written last, so a readable config means complete weights)."""
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    write_atomically(os.path.join(folder, WEIGHTS), lambda temp: save_file(state, temp))
    encoder_config = {**model.encoder.config.to_dict(), "drop_path": 0.0}
    write_json(
        os.path.join(folder, CONFIG),
        {
            "format": CLASSIFIER_FORMAT,
            "coreecg_version": __version__,
            "encoder": encoder_config,
            "preprocessing": preprocessing.to_dict(),
            "crop_seconds": crop_seconds,
            **amplitude.to_json(),
            **info,
            "classes": model.classes,
        },
    )


def load_classifier(path: str, device: str | torch.device = "cpu") -> SavedClassifier:
    """The classifier in ``path`` (its folder, or a fine-tuning run folder holding ``classifier/``)."""
    folder, config = read_model_config(path, "classifier", CLASSIFIER_FORMAT, "coreecg classifier")
    settings = saved_settings(folder, config)
    classes, thresholds, leads = config.get("classes"), config.get("thresholds"), config.get("leads")
    where = os.path.join(folder, CONFIG)
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{where}: classes must be a non-empty list of names, got {classes!r}")
    if not (
        isinstance(thresholds, list)
        and len(thresholds) == len(classes)
        and all(isinstance(t, int | float) and not isinstance(t, bool) for t in thresholds)
    ):
        raise ValueError(f"{where}: thresholds must be {len(classes)} numbers, one per class")
    if leads is not None and not isinstance(leads, str):
        raise ValueError(f"{where}: leads must be text such as 'I,II', got {leads!r}")
    model = Classifier(ECGEncoder(settings.encoder), classes)
    load_weights(folder, model)
    return SavedClassifier(model.to(device), settings.preprocessing, settings.crop_seconds, settings.amplitude, config)


def record_probabilities(
    model: Classifier,
    store: Store,
    rows: Sequence[int] | np.ndarray,
    crop: int,
    leads: str | None = None,
    amplitude: Amplitude = PER_RECORD,
) -> np.ndarray:
    """Per-record class probabilities (len(rows) × classes): window probabilities averaged over the record."""
    return record_outputs(model, model.probabilities, store, rows, crop, leads, amplitude=amplitude)


def predict_store(saved: SavedClassifier, store: Store, rows: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
    """One row per record: id, each class's probability, and each class's 0/1 call at its tuned threshold."""
    check_compatible(saved.preprocessing, store)
    rows = np.arange(store.n_records) if rows is None else np.asarray(rows)
    p = record_probabilities(saved.model, store, rows, saved.crop_samples, saved.leads, saved.amplitude)
    records = store.records.iloc[rows]
    table = pd.DataFrame({"record_id": records["record_id"].to_numpy(), "source": records["source"].to_numpy()})
    for j, name in enumerate(saved.classes):
        table[f"p_{name}"] = np.round(p[:, j], 6)
    for j, name in enumerate(saved.classes):
        table[f"label_{name}"] = (p[:, j] >= saved.thresholds[j]).astype(int)
    return table


def prepare_folder(folder: str, preprocessing: PrepConfig, work: str, log: Callable[[str], None]) -> Store:
    """A store of a WFDB folder prepared with ``preprocessing`` inside ``work`` (rejects listed by prepare)."""
    from coreecg.prepare import prepare_store
    from coreecg.readers import SOURCE_KINDS

    out = os.path.join(work, "store")
    try:
        prepare_store(SOURCE_KINDS["wfdb"](folder), out, preprocessing, log=log)
    except EmptyStoreError:
        reasons = folder_rejects(out)
        listed = "; ".join(f"{row.path}: {row.reason}" for row in reasons.head(3).itertuples())
        more = f" and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        raise ValueError(f"{folder}: no usable record ({listed}{more})") from None
    for row in folder_rejects(out).itertuples():
        log(f"skipped {row.path}: {row.reason}")
    return Store(out)


def folder_rejects(store: str) -> pd.DataFrame:
    """The records a store could not take, with why (``path``, ``reason``)."""
    return pd.read_csv(os.path.join(store, "rejects.csv"), dtype=str, keep_default_na=False)


def predict_folder(
    saved: SavedClassifier, folder: str, log: Callable[[str], None]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions for every usable record of a WFDB folder, and the records that could not be read (with why,
    also logged)."""
    with tempfile.TemporaryDirectory(prefix="coreecg-predict-") as work:
        store = prepare_folder(folder, saved.preprocessing, work, log)
        return predict_store(saved, store), folder_rejects(store.path)
