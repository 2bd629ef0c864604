"""Turn a ``RawRecord`` into the store's canonical form (docs/method.md §1).

Steps, in order: map leads to the canonical 12 (unknown ones flagged and left out); interpolate
short NaN gaps; flag and mask all-NaN and flat leads; flag saturation; polyphase resample to the
store rate; zero-phase Butterworth band-pass (SOS, upper edge clipped below Nyquist); zero long NaN
gaps again. Everything is deterministic and every knob lives in ``PrepConfig``, whose hash is
written into the store so stores made with different settings are never mixed silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sps

from coreecg.leads import CANONICAL_LEADS, N_LEADS, lead_index
from coreecg.record import RATE_RANGE_HZ, RawRecord, RecordError

STORE_FORMAT_VERSION = 1
MIN_SEGMENT_SECONDS = 1.0
# No surface ECG reaches this (PTB-XL and the CinC records peak below 21 mV): a lead beyond it holds
# a wrong gain or garbage, and is masked out like a flat lead rather than stored.
MAX_ABS_MV = 50.0


@dataclass(frozen=True)
class PrepConfig:
    """Every setting that changes the stored numbers. Two stores mix only if their hashes match."""

    fs: float = 100.0  # store sampling rate, Hz
    segment_seconds: float = 10.0  # fixed segment length; longer records become several segments
    band_low: float = 0.67  # band-pass edges, Hz; the upper edge is clipped below Nyquist
    band_high: float = 40.0
    filter_order: int = 4  # Butterworth order per direction (zero-phase doubles it)
    max_nan_gap_seconds: float = 0.2  # NaN gaps up to this are interpolated; longer ones zeroed
    flat_ptp_mv: float = 0.01  # a lead whose peak-to-peak is below this is flat (masked out)
    saturation_seconds: float = 0.1  # a run this long at the lead's extreme value flags saturation
    min_record_seconds: float = 2.0  # shorter records are rejected (too short to filter or crop)
    dtype: str = "float32"  # stored sample type: float32 or float16
    format_version: int = STORE_FORMAT_VERSION

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # 250 and 250.0 must give the same hash
            if field.type == "float":
                object.__setattr__(self, field.name, float(getattr(self, field.name)))
        problems = []
        if not (math.isfinite(self.fs) and RATE_RANGE_HZ[0] <= self.fs <= RATE_RANGE_HZ[1]):
            problems.append(f"rate must be {RATE_RANGE_HZ[0]:g} to {RATE_RANGE_HZ[1]:g} Hz, got {self.fs}")
        if not (math.isfinite(self.segment_seconds) and self.segment_seconds >= MIN_SEGMENT_SECONDS):
            problems.append(f"segment length must be at least {MIN_SEGMENT_SECONDS:g} s, got {self.segment_seconds} s")
        if not 0 <= self.band_low < self.band_high:
            problems.append(f"band must satisfy 0 <= low < high, got {self.band_low}-{self.band_high} Hz")
        if self.band_low >= 0.95 * self.fs / 2:
            problems.append(f"band low edge {self.band_low} Hz is not below Nyquist of {self.fs} Hz")
        if self.dtype not in ("float32", "float16"):
            problems.append(f"dtype must be float32 or float16, got {self.dtype!r}")
        if self.filter_order < 1:
            problems.append(f"filter order must be at least 1, got {self.filter_order}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def segment_samples(self) -> int:
        return round(self.segment_seconds * self.fs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: dict) -> PrepConfig:
        return cls(**values)


@dataclass
class Prepared:
    """A record in canonical form: 12 × T samples at the store rate, absent leads zero."""

    signal: np.ndarray
    lead_mask: np.ndarray  # bool[12]
    lead_mean: np.ndarray  # float32[12], for load-time normalization
    record_std: float
    flags: list[str]


def resampling_ratio(fs_in: float, fs_out: float, path: str) -> tuple[int, int]:
    """(up, down) for ``resample_poly``; rejects rates that cannot be resampled exactly."""
    if not (math.isfinite(fs_in) and RATE_RANGE_HZ[0] <= fs_in <= RATE_RANGE_HZ[1]):
        low, high = RATE_RANGE_HZ
        raise RecordError(path, f"sampling rate {fs_in:g} Hz is outside {low:g} to {high:g} Hz")
    ratio = Fraction(fs_out).limit_denominator(10_000) / Fraction(fs_in).limit_denominator(10_000)
    ratio = ratio.limit_denominator(1_000)
    if abs(float(ratio) - fs_out / fs_in) > 1e-9 * fs_out / fs_in:
        raise RecordError(
            path, f"sampling rate {fs_in} Hz cannot be resampled exactly to {fs_out} Hz (no small integer ratio)"
        )
    return ratio.numerator, ratio.denominator


def clipped_band_high(fs: float, high: float) -> float:
    """The band's upper edge as applied: kept below the store's Nyquist."""
    return min(high, 0.95 * fs / 2)


@lru_cache(maxsize=32)
def _bandpass_sos(fs: float, low: float, high: float, order: int) -> np.ndarray:
    high = clipped_band_high(fs, high)
    if low > 0:
        return sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    return sps.butter(order, high, btype="lowpass", fs=fs, output="sos")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D boolean array."""
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def _longest_run_of(values: np.ndarray, target: float) -> int:
    runs = _runs(values == target)
    return max((stop - start for start, stop in runs), default=0)


def canonical_leads(record: RawRecord) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """12 × T float64 array in canonical order, which leads the file had, and lead-name flags."""
    if record.signal.ndim != 2 or record.signal.shape[0] != len(record.lead_names):
        raise RecordError(
            record.path,
            f"signal shape {record.signal.shape} does not match {len(record.lead_names)} lead names",
        )
    out = np.zeros((N_LEADS, record.signal.shape[1]), dtype=np.float64)
    present = np.zeros(N_LEADS, dtype=bool)
    flags = []
    for row, name in enumerate(record.lead_names):
        index = lead_index(name)
        if index is None:
            flags.append(f"unknown_lead:{name.strip()}")
        elif present[index]:
            flags.append(f"duplicate_lead:{name.strip()}")
        else:
            out[index] = record.signal[row]
            present[index] = True
    if not present.any():
        raise RecordError(
            record.path,
            f"no known lead names among {record.lead_names} (expected names like {', '.join(CANONICAL_LEADS)})",
        )
    return out, present, flags


def prepare_record(record: RawRecord, config: PrepConfig) -> Prepared:
    """Canonical, filtered, resampled record with quality flags; raises ``RecordError`` if unusable."""
    up, down = resampling_ratio(record.fs, config.fs, record.path)
    x, present, flags = canonical_leads(record)
    flags = list(record.flags) + flags
    if record.fs / 2 < clipped_band_high(config.fs, config.band_high):
        flags.append("low_rate")  # the store's band reaches above this record's Nyquist: that part is empty
    n_in = x.shape[1]
    if n_in < config.min_record_seconds * record.fs:
        raise RecordError(
            record.path, f"record is {n_in / record.fs:.2f} s long, shorter than {config.min_record_seconds} s"
        )
    long_gaps: list[tuple[int, int, int]] = []  # (lead, start, stop) in input samples
    max_gap = config.max_nan_gap_seconds * record.fs
    samples = np.arange(n_in)
    for lead in np.flatnonzero(present):
        row = x[lead]
        name = CANONICAL_LEADS[lead]
        invalid = ~np.isfinite(row)
        if invalid.all():
            flags.append(f"nan_lead:{name}")
            present[lead] = False
            continue
        if invalid.any():
            lead_gaps = [(lead, a, b) for a, b in _runs(invalid) if b - a > max_gap]
            if lead_gaps:
                flags.append(f"nan_gap:{name}")
                long_gaps.extend(lead_gaps)
            row[invalid] = np.interp(samples[invalid], samples[~invalid], row[~invalid])
        low, high = row.min(), row.max()
        if max(-low, high) > MAX_ABS_MV:
            flags.append(f"implausible:{name}")  # beyond any surface ECG: a wrong gain or garbage
            present[lead] = False
            continue
        if high - low < config.flat_ptp_mv:
            flags.append(f"flat:{name}")
            present[lead] = False
            continue
        run = max(_longest_run_of(row, high), _longest_run_of(row, low))
        if run >= max(3, config.saturation_seconds * record.fs):
            flags.append(f"saturated:{name}")
    if not present.any():
        raise RecordError(record.path, f"no usable lead: {', '.join(flags)}")
    x[~present] = 0.0
    if (up, down) != (1, 1):
        x = sps.resample_poly(x, up, down, axis=1)
    sos = _bandpass_sos(config.fs, config.band_low, config.band_high, config.filter_order)
    x = sps.sosfiltfilt(sos, x, axis=1)
    for lead, start, stop in long_gaps:
        x[lead, start * up // down : -(-stop * up // down)] = 0.0
    x[~present] = 0.0
    lead_mean = x[present].mean(axis=1)
    centred = x[present] - lead_mean[:, None]
    record_std = float(centred.std())
    means = np.zeros(N_LEADS, dtype=np.float32)
    means[present] = lead_mean
    stored = x.astype(config.dtype)
    if not (np.isfinite(stored).all() and math.isfinite(record_std)):  # never store inf or NaN as an ECG
        raise RecordError(record.path, f"preprocessing gave values that {config.dtype} cannot hold")
    return Prepared(stored, present, means, record_std, flags)
