"""Preprocessing (docs/method.md §1) on synthetic signals where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from coreecg.leads import CANONICAL_LEADS, parse_lead_list
from coreecg.preprocess import PrepConfig, prepare_record, resampling_ratio
from coreecg.record import RawRecord, RecordError


def _record(signal, fs=500.0, leads=None, path="synthetic.hea") -> RawRecord:
    leads = leads or list(CANONICAL_LEADS[: signal.shape[0]])
    return RawRecord(record_id="r", path=path, signal=signal.astype(float), fs=fs, lead_names=leads, source="test")


def _sines(fs=500.0, seconds=10.0, freqs=(1.0, 5.0), leads=12, seed=0):
    t = np.arange(int(fs * seconds)) / fs
    rng = np.random.default_rng(seed)
    return np.stack(
        [sum(rng.uniform(0.2, 1) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in freqs) for _ in range(leads)]
    )


def test_resampling_ratio():
    assert resampling_ratio(500, 100, "x") == (1, 5)
    assert resampling_ratio(257, 100, "x") == (100, 257)
    assert resampling_ratio(400, 100, "x") == (1, 4)
    for bad in (0, -5, 0.0001, 1e6, float("nan"), float("inf")):
        with pytest.raises(RecordError, match="is outside 1 to 100000 Hz"):
            resampling_ratio(bad, 100, "x.hea")
    with pytest.raises(RecordError, match="cannot be resampled"):
        resampling_ratio(np.pi * 100, 100, "x.hea")


def test_resample_and_bandpass_keep_passband_and_remove_wander():
    fs = 500.0
    t = np.arange(5000) / fs
    wander = 2.0 * np.sin(2 * np.pi * 0.1 * t)
    heart = np.sin(2 * np.pi * 8 * t)
    prepared = prepare_record(_record(np.tile(wander + heart, (12, 1)), fs=fs), PrepConfig(fs=100))
    out = prepared.signal[0].astype(float)
    assert out.shape == (1000,)
    expected = np.sin(2 * np.pi * 8 * np.arange(1000) / 100)
    core = slice(300, 700)  # away from the high-pass edge transients
    assert np.abs(out[core] - expected[core]).max() < 0.05  # 8 Hz passes, 0.1 Hz wander is gone


def test_linear_lead_relations_survive():
    x = _sines()
    x[2] = x[1] - x[0]  # Einthoven: III = II - I
    y = prepare_record(_record(x), PrepConfig()).signal.astype(float)
    np.testing.assert_allclose(y[2], y[1] - y[0], atol=1e-5)


def test_lead_names_are_matched_case_insensitively_and_unknown_ones_flagged():
    x = _sines(leads=3)
    prepared = prepare_record(_record(x, leads=["avr", "V1", "Vx"]), PrepConfig())
    assert prepared.lead_mask.tolist() == [name in ("aVR", "V1") for name in CANONICAL_LEADS]
    assert prepared.flags == ["unknown_lead:Vx"]
    assert not prepared.signal[~prepared.lead_mask].any()
    with pytest.raises(RecordError, match="no known lead names"):
        prepare_record(_record(x, leads=["a", "b", "c"]), PrepConfig())


def test_nan_gaps_short_interpolated_long_zeroed_all_nan_masked():
    x = _sines(leads=3)
    x[0, 1000:1010] = np.nan  # 20 ms: interpolated
    x[1, 2000:3000] = np.nan  # 2 s: zeroed and flagged
    x[2, :] = np.nan
    prepared = prepare_record(_record(x), PrepConfig())
    assert np.isfinite(prepared.signal).all()
    assert "nan_gap:II" in prepared.flags and "nan_lead:III" in prepared.flags
    assert not any(f.endswith(":I") for f in prepared.flags)
    assert prepared.lead_mask[:3].tolist() == [True, True, False]
    assert not prepared.signal[1, 400:600].any()  # the long gap, at 100 Hz
    assert np.abs(prepared.signal[0, 190:210]).max() > 0.01  # short gap bridged, not zeroed


def test_flat_and_saturated_leads():
    x = _sines(leads=3)
    x[1] = 0.3
    x[2] = np.clip(x[2], -0.2, 0.2)
    prepared = prepare_record(_record(x), PrepConfig())
    assert "flat:II" in prepared.flags and not prepared.lead_mask[1]
    assert "saturated:III" in prepared.flags and prepared.lead_mask[2]
    with pytest.raises(RecordError, match="no usable lead"):
        prepare_record(_record(np.zeros((2, 5000))), PrepConfig())


def test_low_rate_records_are_flagged():
    assert "low_rate" in prepare_record(_record(_sines(fs=50.0), fs=50.0), PrepConfig()).flags
    assert "low_rate" not in prepare_record(_record(_sines(fs=100.0), fs=100.0), PrepConfig()).flags


def test_too_short_record_rejected():
    with pytest.raises(RecordError, match="shorter than"):
        prepare_record(_record(_sines(seconds=1.0)), PrepConfig())


def test_normalization_statistics():
    x = _sines()
    prepared = prepare_record(_record(x), PrepConfig())
    y = prepared.signal.astype(float)
    np.testing.assert_allclose(prepared.lead_mean, y.mean(axis=1), atol=1e-5)
    assert prepared.record_std == pytest.approx((y - y.mean(axis=1, keepdims=True)).std(), rel=1e-5)


def test_deterministic_and_hash_tracks_every_setting():
    x = _sines()
    a = prepare_record(_record(x), PrepConfig()).signal
    b = prepare_record(_record(x), PrepConfig()).signal
    assert np.array_equal(a, b)
    base = PrepConfig()
    assert base.hash() == PrepConfig().hash()
    assert PrepConfig(fs=250).hash() == PrepConfig(fs=250.0).hash()
    for change in ({"fs": 250.0}, {"band_high": 45.0}, {"segment_seconds": 5.0}, {"dtype": "float16"}):
        assert PrepConfig(**change).hash() != base.hash()


def test_config_validation():
    with pytest.raises(ValueError, match="band"):
        PrepConfig(band_low=50, band_high=40)
    with pytest.raises(ValueError, match="rate"):
        PrepConfig(fs=-1)


def test_parse_lead_list():
    assert parse_lead_list("I, ii ,AVF") == [0, 1, 5]
    assert parse_lead_list(["DII", "MLIII"]) == [1, 2]
    with pytest.raises(ValueError, match="unknown lead"):
        parse_lead_list("I,V7")
