"""The synthetic ECG: lead relations, QRS width in bundle branch block, RR irregularity in AF, rates — measured
on the generated signals the way one would on a recording."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import quiet

from coreecg.prepare import prepare_store
from coreecg.preprocess import PrepConfig
from coreecg.readers import SOURCE_KINDS
from coreecg.store import Store
from coreecg.synthetic import synthetic_ecg

FS = 500.0
RECORDS = [synthetic_ecg(seed, FS, 10.0) for seed in range(160)]


def _spatial_velocity(signal: np.ndarray, fs: float) -> np.ndarray:
    return np.sqrt((np.diff(signal, axis=1) ** 2).sum(0)) * fs


def _beats(signal: np.ndarray, fs: float) -> np.ndarray:
    """QRS times from peaks of the spatial velocity (steepest slopes), at least 0.25 s apart."""
    v = _spatial_velocity(signal, fs)
    threshold = 0.35 * np.percentile(v, 99.5)
    found: list[int] = []
    for i in np.argsort(-v):
        if v[i] < threshold:
            break
        if all(abs(i - j) > 0.25 * fs for j in found):
            found.append(int(i))
    return np.sort(np.array(found)) / fs


def _qrs_width(signal: np.ndarray, fs: float, beats: np.ndarray) -> float:
    """Median span where the spatial velocity exceeds 15 % of its peak within ±150 ms of each QRS."""
    v = _spatial_velocity(signal, fs)
    widths = []
    for t in beats:
        if 0.3 < t < signal.shape[1] / fs - 0.3:
            window = v[int((t - 0.15) * fs) : int((t + 0.15) * fs)]
            above = np.flatnonzero(window > 0.15 * window.max())
            widths.append((above[-1] - above[0]) / fs)
    return float(np.median(widths))


def _clean(wanted: set[str], excluded: set[str] = frozenset()) -> list:
    """Noise-free records that have every ``wanted`` label and none of ``excluded``."""
    return [r for r in RECORDS if not r.noises and wanted <= set(r.labels) and not set(r.labels) & excluded]


def test_einthoven_and_goldberger_hold_sample_for_sample_with_noise():
    noisy = [r for r in RECORDS if r.noises]
    assert len(noisy) > 50
    for r in noisy:
        lead = dict(zip(("I", "II", "III", "aVR", "aVL", "aVF"), r.signal[:6], strict=True))
        assert np.allclose(lead["I"] + lead["III"], lead["II"], atol=1e-9)
        assert np.allclose(lead["aVR"] + lead["aVL"] + lead["aVF"], 0.0, atol=1e-9)
        assert np.allclose(lead["aVR"], -(lead["I"] + lead["II"]) / 2, atol=1e-9)


def test_bundle_branch_blocks_widen_the_qrs():
    normal = [_qrs_width(r.signal, FS, _beats(r.signal, FS)) for r in _clean(set(), {"LBBB", "RBBB", "PVC"})]
    for block in ("LBBB", "RBBB"):
        widths = [_qrs_width(r.signal, FS, _beats(r.signal, FS)) for r in _clean({block}, {"PVC"})]
        assert len(widths) >= 3
        assert min(widths) >= 0.12, (block, widths)
    assert len(normal) >= 10 and max(normal) < 0.11 and min(normal) > 0.06


def test_lead_specific_shapes_of_the_blocks():
    """LBBB: V1 mostly negative (QS), V6 positive; RBBB: a late positive deflection (R') in V1."""
    for r in _clean({"LBBB"}, {"PVC"}):
        beats = _beats(r.signal, FS)
        v1 = np.concatenate([r.signal[6, int((t - 0.08) * FS) : int((t + 0.08) * FS)] for t in beats[1:-1]])
        v6 = np.concatenate([r.signal[11, int((t - 0.08) * FS) : int((t + 0.08) * FS)] for t in beats[1:-1]])
        assert v1.min() < -2 * v1.max() and v6.max() > -2 * v6.min()
    for r in _clean({"RBBB"}, {"PVC"}):
        beats = _beats(r.signal, FS)
        late = [r.signal[6, int((t + 0.05) * FS) : int((t + 0.1) * FS)].max() for t in beats[1:-1]]
        assert np.median(late) > 0.2  # R' in V1


def test_rr_is_irregular_in_af_and_regular_in_sinus_rhythm_with_the_labelled_rates():
    def rr_stats(r):
        rr = np.diff(_beats(r.signal, FS))
        return rr.std() / rr.mean(), 60.0 / rr.mean()

    af = [rr_stats(r)[0] for r in _clean({"AF"}, {"PVC"})]
    assert len(af) >= 5 and min(af) > 0.12
    for rhythm, low, high in (("NSR", 58, 102), ("SB", 35, 60), ("STACH", 100, 155)):
        stats = [rr_stats(r) for r in _clean({rhythm}, {"PVC"})]
        assert len(stats) >= 3, rhythm
        assert max(cv for cv, _ in stats) < 0.08, rhythm
        assert all(low <= rate <= high for _, rate in stats), (rhythm, [rate for _, rate in stats])


def test_same_seed_same_record_at_any_rate_and_length():
    a, b = synthetic_ecg(7, 250.0, 4.0), synthetic_ecg(7, 250.0, 4.0)
    assert np.array_equal(a.signal, b.signal) and a.labels == b.labels
    assert a.signal.shape == (12, 1000) and synthetic_ecg(7, 100.0, 30.0).signal.shape == (12, 3000)
    assert not np.array_equal(synthetic_ecg(8, 250.0, 4.0).signal, a.signal)
    with pytest.raises(ValueError, match="positive"):
        synthetic_ecg(1, 0.0, 10.0)


def test_prepare_synthetic_writes_a_labelled_store(tmp_path):
    source = SOURCE_KINDS["synthetic"](records=30, fs=250.0, seconds=10.0, seed=3)
    prepare_store(source, str(tmp_path / "syn"), PrepConfig(), log=quiet)
    store = Store(str(tmp_path / "syn"))
    labels = store.label_set("condition")
    assert store.n_records == 30 and labels.labelled.all()
    assert labels.classes[:4] == ["NSR", "SB", "STACH", "AF"]
    rhythm = labels.matrix[:, :4]
    assert np.all(rhythm.sum(1) == 1)  # exactly one rhythm per record
    assert sorted(set(store.split)) == ["test", "train", "val"]
    again = SOURCE_KINDS["synthetic"](records=30, fs=250.0, seconds=10.0, seed=3).read("syn000004")
    assert np.array_equal(again.signal, source.read("syn000004").signal)
