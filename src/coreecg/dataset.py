"""A torch ``Dataset`` over a store: random crops for training, fixed windows for evaluation.

Signals stay on disk (memory-mapped); an item copies only its crop. Normalization happens here, at
load time (docs/method.md §1): each present lead minus its record mean, divided by the record's overall
standard deviation, both precomputed at prepare time. ``Amplitude`` can keep some or all of the
absolute voltage (high or low QRS voltage, hypertrophy) visible to the model instead. Padding of
short records stays zero.

Two ways to batch:
- ``DataLoader(dataset, batch_size=B)``: works as usual; ``__getitems__`` gathers the whole batch
  at once and hands per-item views to the default collate.
- ``dataset.loader(B)``: the fast path; each fetch is one vectorized ``dataset[list_of_indices]``
  that returns a ready batch, with no per-item collate.
Random offsets come from torch's RNG, so runs are reproducible under ``torch.manual_seed`` and each
DataLoader worker draws its own stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import BatchSampler, ConcatDataset, DataLoader, Dataset, RandomSampler, SequentialSampler

from coreecg.leads import N_LEADS, parse_lead_list
from coreecg.store import Store, StoreError, check_same_preprocessing

_EPS = 1e-6


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Amplitude:
    """What a record is divided by at load time, saved with every encoder so its users divide alike.

    ``scale_mv`` None: the record's own std (docs/method.md §1); every record then has amplitude 1, which
    hides absolute voltage. Otherwise ``std^(1 - kept) · scale_mv^kept``, so a record's normalized
    amplitude is ``(std / scale_mv)^kept``: ``kept`` 1 divides every record by the one amplitude
    ``scale_mv`` (absolute voltage fully visible), 0.5 halves amplitude differences on a log scale.
    """

    scale_mv: float | None = None
    kept: float = 1.0

    def __post_init__(self) -> None:
        if self.scale_mv is not None and not (_is_number(self.scale_mv) and self.scale_mv > 0):
            raise ValueError(f"scale_mv must be a positive amplitude in mV, got {self.scale_mv!r}")
        if not (_is_number(self.kept) and 0 < self.kept <= 1):
            raise ValueError(f"amplitude_kept must be in (0, 1], got {self.kept!r}")
        if self.kept != 1 and self.scale_mv is None:
            raise ValueError("amplitude_kept below 1 needs scale_mv: the amplitude it keeps is relative to it")

    @property
    def per_record(self) -> bool:
        return self.scale_mv is None

    def divisors(self, record_std: np.ndarray) -> np.ndarray:
        """The divisor of each record, from its std (same shape and dtype)."""
        std = np.asarray(record_std)
        if self.scale_mv is None:
            return std
        fixed = np.full_like(std, self.scale_mv)
        if self.kept == 1:
            return fixed
        return (np.maximum(std, _EPS) ** (1 - self.kept) * fixed**self.kept).astype(std.dtype)

    def to_json(self) -> dict:
        return {"scale_mv": self.scale_mv, "amplitude_kept": self.kept}

    @classmethod
    def from_options(cls, scale_mv: float | None, kept: float | None) -> Amplitude:
        """From config or command-line options, where an unset ``kept`` means 1 (all of it)."""
        return cls(scale_mv, 1.0 if kept is None else kept)

    @classmethod
    def from_json(cls, config: dict) -> Amplitude:
        """Read back ``to_json``; keys absent in files written before they existed mean per-record / 1."""
        return cls.from_options(config.get("scale_mv"), config.get("amplitude_kept"))


PER_RECORD = Amplitude()  # docs/method.md §1's default: every record over its own std


def window_starts(room: np.ndarray, windows: int) -> np.ndarray:
    """Evenly spaced crop starts, items × windows, for items with ``room`` samples beyond one crop."""
    steps = np.linspace(0.0, 1.0, windows) if windows > 1 else np.array([0.5])
    return np.round(np.asarray(room)[:, None] * steps[None, :]).astype(np.int64)


def windows_to_cover(length: float, crop: float) -> int:
    """How many evenly spaced crops it takes to cover ``length`` (same units as ``crop``)."""
    return max(1, math.ceil(length / crop - 1e-9))


def normalize_crops(crops: np.ndarray, lead_mean: np.ndarray, scale: np.ndarray, lead_mask: np.ndarray) -> None:
    """In place, crops items × windows × 12 × T: each lead minus its record mean, over the record's
    ``scale`` (its std, or a fixed amplitude); absent leads zero. The one definition of load-time
    normalization (docs/method.md §1)."""
    crops -= lead_mean[:, None, :, None]
    crops *= (1.0 / (scale + _EPS))[:, None, None, None]
    crops *= lead_mask[:, None, :, None]


class StoreDataset(Dataset):
    """Segments of a store, optionally filtered by fold/split and restricted to labelled records.

    ``mode="train"``: one random crop of ``crop_seconds`` per item (``signal``: 12 × crop).
    ``mode="eval"``: ``windows`` evenly spaced crops per item (``signal``: windows × 12 × crop).
    ``leads`` keeps only the listed leads (the others are zeroed and masked), for reduced-lead use.
    ``records`` keeps only these record rows (e.g. a stratified label fraction).
    ``amplitude``: what each record is divided by (default: its own std).
    """

    def __init__(
        self,
        store: Store | str,
        *,
        mode: str = "train",
        crop_seconds: float | None = None,
        windows: int = 1,
        label_set: str | None = None,
        folds: Sequence[int] | None = None,
        splits: Sequence[str] | None = None,
        leads: str | Sequence[str] | None = None,
        records: Sequence[int] | np.ndarray | None = None,
        normalize: bool = True,
        amplitude: Amplitude = PER_RECORD,
    ):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.store = store if isinstance(store, Store) else Store(store)
        self.mode, self.normalize = mode, normalize
        segment = self.store.config.segment_samples
        self.crop = segment if crop_seconds is None else round(crop_seconds * self.store.fs)
        if not 0 < self.crop <= segment:
            raise ValueError(f"crop of {self.crop} samples must be within the store's {segment}-sample segments")
        if windows < 1:
            raise ValueError("windows must be at least 1")
        self.windows = windows
        keep = np.ones(self.store.n_records, dtype=bool)
        if folds is not None:
            keep &= np.isin(self.store.fold, list(folds))
        if splits is not None:
            keep &= np.isin(self.store.split, list(splits))
        if records is not None:
            chosen = np.zeros_like(keep)
            chosen[np.asarray(records, dtype=np.int64)] = True
            keep &= chosen
        self.label_set = label_set
        self.classes: list[str] = []
        self._labels: np.ndarray | None = None
        if label_set is not None:
            labels = self.store.label_set(label_set)
            keep &= labels.labelled
            self.classes = labels.classes
            self._labels = labels.matrix.astype(np.float32)
        lead_keep = np.ones(N_LEADS, dtype=bool)
        if leads is not None:
            lead_keep[:] = False
            lead_keep[parse_lead_list(leads)] = True
        self.lead_keep = lead_keep
        self.segments = np.flatnonzero(keep[self.store.segment_record]).astype(np.int64)
        if len(self.segments) == 0:
            raise StoreError(f"{self.store.path}: no segments match this selection (folds, splits, label set)")
        if mode == "train":  # random crops: warm the page cache instead of faulting page by page
            self.store.prefetch(np.unique(self.store.segment_shard[self.segments]))
        # The record std over the kept leads: what per-record normalization divides by, and what an
        # encoder's amplitude token is given (batch key "record_std").
        self.record_std = self.store.record_std if lead_keep.all() else self._std_over_kept_leads()
        self.scale = amplitude.divisors(self.record_std)

    def __len__(self) -> int:
        return len(self.segments)

    @property
    def records(self) -> np.ndarray:
        """Record row of every item, so evaluation can average items of one record."""
        return self.store.segment_record[self.segments]

    def _std_over_kept_leads(self) -> np.ndarray:
        """Record std over the kept leads only, as a device recording just those leads would be normalized.

        The store's ``record_std`` pools all present leads; with fewer leads that would leak the
        amplitude of leads the model is not allowed to see. Computed from the selected records'
        segments (valid samples only; a record's overlapping last segment counts twice).
        """
        store = self.store
        total = np.zeros(store.n_records)
        count = np.zeros(store.n_records)
        for segment in self.segments:
            record = store.segment_record[segment]
            kept = store.lead_mask[record] & self.lead_keep
            x = store.segment(int(segment))[kept, : store.segment_valid[segment]].astype(np.float64)
            centred = x - store.lead_mean[record][kept, None]
            total[record] += np.square(centred).sum()
            count[record] += centred.size
        std = self.store.record_std.astype(np.float64).copy()
        measured = count > 0
        std[measured] = np.sqrt(total[measured] / count[measured])
        return std.astype(self.store.record_std.dtype)

    def _offsets(self, valid: np.ndarray) -> np.ndarray:
        """Crop starts, items × windows: random in train mode, evenly spaced in eval mode."""
        room = np.maximum(valid - self.crop, 0)
        if self.mode == "train":
            draws = torch.rand(len(valid), dtype=torch.float64).numpy()
            return np.minimum((draws * (room + 1)).astype(np.int64), room)[:, None]
        return window_starts(room, self.windows)

    def batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """A whole batch in one vectorized gather (the fast path)."""
        items = np.asarray(indices, dtype=np.int64)
        segments = self.segments[items]
        store = self.store
        valid = store.segment_valid[segments].astype(np.int64)
        offsets = self._offsets(valid)  # items × windows
        n, w = offsets.shape
        out = np.empty((n, w, N_LEADS, self.crop), dtype=np.float32)
        shards, rows = store.segment_shard[segments], store.segment_row[segments]
        for j in range(n):
            signals = store.signals(int(shards[j]))
            for k in range(w):
                start = offsets[j, k]
                out[j, k] = signals[rows[j], :, start : start + self.crop]
        records = store.segment_record[segments]
        lead_mask = store.lead_mask[records] & self.lead_keep
        if self.normalize:
            normalize_crops(out, store.lead_mean[records], self.scale[records], lead_mask)
        else:
            out *= lead_mask[:, None, :, None]
        short = valid < self.crop
        if short.any():  # short records start at 0; keep their padding zero after normalization
            pad = np.arange(self.crop)[None, :] >= valid[:, None]
            out *= ~pad[:, None, None, :]
        signal = torch.from_numpy(out if self.mode == "eval" else out[:, 0])
        batch = {
            "signal": signal,
            "lead_mask": torch.from_numpy(lead_mask),
            "record_std": torch.from_numpy(self.record_std[records].astype(np.float32)),
            "segment": torch.from_numpy(segments),
            "record": torch.from_numpy(records.astype(np.int64)),
        }
        if self._labels is not None:
            batch["label"] = torch.from_numpy(self._labels[records])
        return batch

    def __getitem__(self, index):
        if isinstance(index, (list, tuple, np.ndarray, torch.Tensor)):
            return self.batch(np.asarray(index))
        one = self.batch([index])
        return {key: value[0] for key, value in one.items()}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        batch = self.batch(indices)
        return [{key: value[j] for key, value in batch.items()} for j in range(len(indices))]

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool | None = None,
        drop_last: bool = False,
        num_workers: int = 0,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> DataLoader:
        """A DataLoader that fetches whole batches with ``batch`` (shuffled in train mode by default)."""
        shuffle = self.mode == "train" if shuffle is None else shuffle
        sampler = RandomSampler(self, generator=generator) if shuffle else SequentialSampler(self)
        return DataLoader(
            self,
            sampler=BatchSampler(sampler, batch_size, drop_last),
            batch_size=None,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            **kwargs,
        )


def concat_datasets(datasets: Sequence[StoreDataset]) -> ConcatDataset:
    """Several stores as one dataset; refuses stores prepared with different settings."""
    check_same_preprocessing([d.store for d in datasets])
    return ConcatDataset(datasets)
