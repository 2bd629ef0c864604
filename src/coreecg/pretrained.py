"""A trained encoder on disk (``model.safetensors`` + ``config.json``) and in use, without the training code.

``load_encoder(path or name)`` returns a ``PretrainedEncoder``: an ``nn.Module`` whose ``forward`` takes
prepared, normalized crops, and whose ``embed`` takes raw signals in millivolts with their rate
and lead names and applies the very preprocessing of the store it was trained on (resampling,
band-pass, lead mapping, load-time normalization), so users never re-implement it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from coreecg.config import ConfigError, build
from coreecg.dataset import PER_RECORD, Amplitude, normalize_crops, window_starts, windows_to_cover
from coreecg.errors import first_line
from coreecg.files import read_json, write_atomically, write_json
from coreecg.leads import CANONICAL_LEADS
from coreecg.model import ECGEncoder, EncoderConfig, crop_samples, evaluating
from coreecg.preprocess import PrepConfig, prepare_record
from coreecg.record import RawRecord
from coreecg.version import __version__

ENCODER_FORMAT = "coreecg-encoder"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
# Encoders that ship inside the package, one folder each (weights, config.json, MODEL_CARD.md).
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "encoders")


def available_encoders() -> list[str]:
    """Names of the encoders shipped with coreecg, for ``load_encoder(NAME)`` and ``--encoder NAME``."""
    if not os.path.isdir(SHIPPED):
        return []
    return sorted(n for n in os.listdir(SHIPPED) if os.path.isfile(os.path.join(SHIPPED, n, CONFIG)))


HUB_PREFIX = "hf://"


def encoder_location(spec: str) -> str:
    """The folder ``spec`` names: an existing path as it is (``~`` expanded), a shipped encoder's name, or
    ``hf://OWNER/NAME[@REVISION]`` on the Hugging Face Hub (downloaded into its cache)."""
    if spec.startswith(HUB_PREFIX):
        return hub_snapshot(spec)
    path = os.path.expanduser(spec)
    if os.path.exists(path) or os.sep in spec or spec.startswith("."):
        return path
    if spec in available_encoders():
        return os.path.join(SHIPPED, spec)
    shipped = ", ".join(available_encoders()) or "none"
    raise FileNotFoundError(f"{spec}: no such folder, and not the name of a shipped encoder (shipped: {shipped})")


def eval_batch_records(device: torch.device) -> int:
    """Records per evaluation batch: small on CPU, where activations that stay in cache beat big matrices
    (tiny encoder: 48 records/s at 8 against 42 at 64, bench/bench_embed.py), large on accelerators."""
    return 8 if device.type == "cpu" else 64


class PretrainedEncoder(nn.Module):
    """An encoder plus what it needs to embed raw ECGs: preprocessing settings, crop length and the
    amplitude normalization it was trained with (``amplitude``, see ``Amplitude``)."""

    def __init__(
        self,
        encoder: ECGEncoder,
        preprocessing: PrepConfig,
        crop_seconds: float,
        info: dict | None = None,
        amplitude: Amplitude = PER_RECORD,
    ):
        super().__init__()
        self.encoder = encoder
        self.preprocessing = preprocessing
        self.crop_seconds = crop_seconds
        self.info = dict(info or {})
        self.amplitude = amplitude

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def crop_samples(self) -> int:
        return crop_samples(self.crop_seconds, self.preprocessing.fs, self.encoder.config.patch)

    def forward(
        self,
        x: torch.Tensor,
        lead_mask: torch.Tensor,
        record_std: torch.Tensor | None = None,
        features: str = "g",
    ) -> torch.Tensor:
        """g of prepared, normalized crops: B × 12 × T (T a multiple of the patch) → B × D; ``features``:
        see ``ECGEncoder.embed``.

        ``record_std`` (B, mV) is each crop's record std, needed by an encoder with an amplitude token.
        """
        return self.encoder.embed(x, lead_mask, record_std, features)

    def windows(self, signal: np.ndarray, count: int | None = None) -> np.ndarray:
        """Evenly spaced crops of a prepared 12 × T signal (zero-padded if shorter): W × 12 × crop.

        Placed exactly as ``StoreDataset(mode="eval")`` places them, so both paths give the same g.
        """
        crop, length = self.crop_samples, signal.shape[1]
        if length < crop:
            signal = np.pad(signal, ((0, 0), (0, crop - length)))
        starts = window_starts(np.array([max(length - crop, 0)]), count or windows_to_cover(length, crop))[0]
        return np.stack([signal[:, s : s + crop] for s in starts])

    def prepare(
        self, signal: np.ndarray, fs: float, leads: Sequence[str], windows: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One raw record (leads × time, mV) as the model's input: its windows (W × 12 × crop, float32,
        preprocessed and normalized as the training store), their lead mask (W × 12) and the record's std
        (W, mV). What ``forward`` takes, and the input contract of an ONNX export (docs/deploy.md)."""
        raw = RawRecord(
            record_id="0",
            path="<signal>",
            signal=np.asarray(signal, dtype=np.float64),
            fs=fs,
            lead_names=list(leads),
            source="embed",
        )
        prepared = prepare_record(raw, self.preprocessing)
        x = prepared.signal.astype(np.float32)[None, None]
        scale = self.amplitude.divisors(np.array([prepared.record_std]))
        normalize_crops(x, prepared.lead_mean[None], scale, prepared.lead_mask[None])
        cut = self.windows(x[0, 0], windows)
        mask = np.repeat(prepared.lead_mask[None], len(cut), axis=0)
        return cut, mask, np.full(len(cut), prepared.record_std, dtype=np.float32)

    @torch.no_grad()
    def embed(
        self,
        signal: np.ndarray | Sequence[np.ndarray],
        fs: float,
        leads: Sequence[str],
        windows: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Embeddings of raw records (leads × time in mV, or a list/array of them): D, or N × D.

        Each record is preprocessed as the training store was, cut into evenly spaced windows of
        the training crop length (enough to cover it, or ``windows``), and its windows' g averaged.
        """
        single = isinstance(signal, np.ndarray) and signal.ndim == 2
        records = [signal] if single else list(signal)
        crops, masks, stds, owner = [], [], [], []
        for i, raw in enumerate(records):
            cut, mask, std = self.prepare(raw, fs, leads, windows)
            crops.append(cut)
            masks.append(mask)
            stds.append(std)
            owner.extend([i] * len(cut))
        x_all, mask_all, std_all = np.concatenate(crops), np.concatenate(masks), np.concatenate(stds)
        device = next(self.parameters()).device
        batch_size = batch_size or 2 * eval_batch_records(device)  # windows
        parts = []
        with evaluating(self):
            for start in range(0, len(x_all), batch_size):
                x = torch.from_numpy(x_all[start : start + batch_size]).to(device)
                m = torch.from_numpy(mask_all[start : start + batch_size]).to(device)
                s = torch.from_numpy(std_all[start : start + batch_size]).to(device)
                parts.append(self(x, m, s).float().cpu())
        g = torch.cat(parts).numpy()
        owner_array = np.asarray(owner)
        out = np.stack([g[owner_array == i].mean(0) for i in range(len(records))])
        return out[0] if single else out

    def save(self, folder: str) -> None:
        save_encoder(self.encoder, folder, self.preprocessing, self.crop_seconds, self.info, self.amplitude)


def save_encoder(
    encoder: ECGEncoder,
    folder: str,
    preprocessing: PrepConfig,
    crop_seconds: float,
    info: dict | None = None,
    amplitude: Amplitude = PER_RECORD,
) -> None:
    """Write weights and config atomically (config last, so a readable config means complete weights)."""
    state = {key: value.detach().cpu().contiguous() for key, value in encoder.state_dict().items()}
    write_atomically(os.path.join(folder, WEIGHTS), lambda temp: save_file(state, temp))
    write_json(
        os.path.join(folder, CONFIG),
        {
            "format": ENCODER_FORMAT,
            "coreecg_version": __version__,
            "encoder": encoder.config.to_dict(),
            "preprocessing": preprocessing.to_dict(),
            "crop_seconds": crop_seconds,
            **amplitude.to_json(),
            "leads": list(CANONICAL_LEADS),
            "info": info or {},
        },
    )


def hub_snapshot(spec: str) -> str:
    """The local folder of ``hf://OWNER/NAME[@REVISION]``'s config.json and weights, fetched through
    huggingface_hub (its cache, ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are honoured)."""
    repo, _, revision = spec[len(HUB_PREFIX) :].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{spec}: expected hf://OWNER/NAME or hf://OWNER/NAME@REVISION")
    try:
        from huggingface_hub import hf_hub_download
    except ModuleNotFoundError:
        raise ValueError(f"{spec}: the Hub needs huggingface_hub (pip install 'coreecg[hub]')") from None
    where = {"endpoint": os.environ.get("HF_ENDPOINT"), "cache_dir": os.environ.get("HF_HUB_CACHE")}
    try:
        paths = [hf_hub_download(repo, name, revision=revision or None, **where) for name in (CONFIG, WEIGHTS)]
    except Exception as error:  # huggingface_hub's own errors (not found, offline, HTTP) and OS errors
        raise ValueError(
            f"{spec}: cannot fetch it from the Hub ({type(error).__name__}: {first_line(error)})"
        ) from None
    return os.path.dirname(paths[0])


def push_encoder(folder: str, repo: str, revision: str | None = None, private: bool = False) -> str:
    """Upload a saved encoder folder (config.json, model.safetensors and any model card) to the Hub repository
    ``OWNER/NAME`` (created if needed); returns the commit's URL. Needs a token (``hf auth login``)."""
    folder, config = read_model_config(encoder_location(folder), "encoder", ENCODER_FORMAT, "coreecg encoder")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT"))
    api.create_repo(repo, private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=folder,
        repo_id=repo,
        revision=revision,
        commit_message=f"coreecg encoder ({config.get('coreecg_version')})",
    )
    return str(commit.commit_url)


def read_model_config(path: str, subfolder: str, expected_format: str, what: str) -> tuple[str, dict]:
    """The folder and parsed config.json of a saved model at ``path`` or ``path/subfolder``, checked."""
    folder = path
    if not os.path.isfile(os.path.join(folder, CONFIG)) and os.path.isfile(os.path.join(path, subfolder, CONFIG)):
        folder = os.path.join(path, subfolder)
    config_path = os.path.join(folder, CONFIG)
    try:
        config = read_json(config_path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: no {what} here (expected {CONFIG} and {WEIGHTS})") from error
    if not isinstance(config, dict) or config.get("format") != expected_format:
        found = config.get("format") if isinstance(config, dict) else None
        raise ValueError(f"{config_path}: not a {what} (format {found!r}, expected {expected_format!r})")
    if not os.path.isfile(os.path.join(folder, WEIGHTS)):
        raise FileNotFoundError(f"{os.path.join(folder, WEIGHTS)}: weights missing")
    return folder, config


@dataclass(frozen=True)
class SavedSettings:
    """What every saved model's config.json must hold, checked: a file from anyone gives a clear error."""

    encoder: EncoderConfig
    preprocessing: PrepConfig
    crop_seconds: float
    amplitude: Amplitude
    info: dict


def saved_settings(folder: str, config: dict) -> SavedSettings:
    """The checked settings of a saved model's config.json; ``ValueError`` naming the file and the key."""
    where = os.path.join(folder, CONFIG)
    try:
        encoder = build(EncoderConfig, _section(config, "encoder"), "encoder")
        preprocessing = build(PrepConfig, _section(config, "preprocessing"), "preprocessing")
        amplitude = Amplitude.from_json(config)
    except ValueError as error:  # ConfigError included
        raise ValueError(f"{where}: {error}") from None
    crop = config.get("crop_seconds")
    if isinstance(crop, bool) or not isinstance(crop, int | float) or not (math.isfinite(crop) and 0 < crop <= 3600):
        raise ValueError(f"{where}: crop_seconds must be a number of seconds in (0, 3600], got {crop!r}")
    info = config.get("info", {})
    if not isinstance(info, dict):
        raise ValueError(f"{where}: info must be a mapping, got {type(info).__name__}")
    return SavedSettings(encoder, preprocessing, float(crop), amplitude, info)


def _section(config: dict, name: str) -> dict:
    section = config.get(name)
    if not isinstance(section, dict):
        raise ConfigError(f"section {name!r} is missing or not a mapping")
    return section


def load_weights(folder: str, module: nn.Module) -> None:
    """``model.safetensors`` into ``module``, refusing a damaged file, one that does not fit the config, or
    non-finite weights, each with one line naming the file."""
    path = os.path.join(folder, WEIGHTS)
    try:
        state = load_file(path)
    except Exception as error:  # safetensors raises its own error type for damaged files
        raise ValueError(f"{path}: not a readable safetensors file ({first_line(error)})") from None
    expected = module.state_dict()
    wrong_shape = [
        f"{k} {tuple(state[k].shape)}, not {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = {
        "missing": sorted(set(expected) - set(state)),
        "unexpected": sorted(set(state) - set(expected)),
        "wrong shape": wrong_shape,
    }
    found = [f"{label}: {_some(items)}" for label, items in problems.items() if items]
    if found:
        raise ValueError(f"{path}: does not fit {CONFIG} ({'; '.join(found)})")
    non_finite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise ValueError(f"{path}: non-finite weights in {_some(non_finite)}")
    module.load_state_dict(state)


def _some(items: list[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def load_encoder(path: str, device: str | torch.device = "cpu") -> PretrainedEncoder:
    """The encoder in ``path`` (a folder with config.json and model.safetensors, or a run folder), or the
    shipped encoder of that name (``available_encoders()``)."""
    folder, config = read_model_config(encoder_location(path), "encoder", ENCODER_FORMAT, "coreecg encoder")
    settings = saved_settings(folder, config)
    encoder = ECGEncoder(settings.encoder)
    load_weights(folder, encoder)
    model = PretrainedEncoder(encoder, settings.preprocessing, settings.crop_seconds, settings.info, settings.amplitude)
    return model.to(device).eval()
