"""The torch Dataset over a store: crops, windows, normalization, labels, leads, workers."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from coreecg.dataset import Amplitude, StoreDataset, concat_datasets
from coreecg.prepare import prepare_store
from coreecg.preprocess import PrepConfig
from coreecg.readers import SOURCE_KINDS
from coreecg.store import Store, StoreError
from tests.conftest import CINC, quiet


def test_train_crops_come_from_the_normalized_segment(ptbxl_store):
    store = Store(str(ptbxl_store))
    dataset = StoreDataset(store, crop_seconds=2.5)
    torch.manual_seed(0)
    item = dataset[7]
    assert item["signal"].shape == (12, 250) and item["signal"].dtype == torch.float32
    segment = store.segment(7)
    record = int(store.segment_record[7])
    normalized = (segment - store.lead_mean[record][:, None]) / store.record_std[record]
    crop = item["signal"].numpy()
    starts = [s for s in range(0, 751) if np.allclose(normalized[:, s : s + 250], crop, atol=1e-5)]
    assert len(starts) == 1  # the crop is exactly one window of this segment
    full = StoreDataset(store, mode="eval")[7]["signal"][0].numpy()
    assert np.abs(full.mean(axis=1)).max() < 1e-4 and full.std() == pytest.approx(1.0, rel=1e-3)


def test_fixed_amplitude_keeps_the_voltage_differences_between_records(ptbxl_store):
    store = Store(str(ptbxl_store))
    fixed = StoreDataset(store, mode="eval", amplitude=Amplitude(0.2))
    own = StoreDataset(store, mode="eval")
    for item in (0, 7):
        record = int(store.segment_record[item])
        expected = (store.segment(item) - store.lead_mean[record][:, None]) / 0.2 * store.lead_mask[record][:, None]
        assert np.allclose(fixed[item]["signal"][0].numpy(), expected, atol=1e-4)
        assert np.allclose(fixed[item]["signal"] * 0.2, own[item]["signal"] * store.record_std[record], atol=1e-4)
    with pytest.raises(ValueError, match="scale_mv must be a positive amplitude in mV, got -1"):
        StoreDataset(store, amplitude=Amplitude(-1.0))


def test_partial_amplitude_keeps_part_of_each_records_voltage_on_a_log_scale(ptbxl_store):
    store = Store(str(ptbxl_store))
    own = StoreDataset(store, mode="eval")
    half = StoreDataset(store, mode="eval", amplitude=Amplitude(0.2, kept=0.5))
    for item in (0, 7):
        record = int(store.segment_record[item])
        std = float(store.record_std[record])
        # normalized amplitude (std / 0.2) ** 0.5: between 1 (own std) and std / 0.2 (fixed amplitude)
        assert np.allclose(half[item]["signal"], own[item]["signal"] * np.sqrt(std / 0.2), atol=1e-4)
    # with fewer leads, the part of the std that is divided out is that of the kept leads only
    lead_one = StoreDataset(store, mode="eval", leads="I", amplitude=Amplitude(0.2, kept=0.5))
    lead_one_own = StoreDataset(store, mode="eval", leads="I")
    assert np.allclose(lead_one.scale, np.sqrt(lead_one_own.scale * 0.2), rtol=1e-5)
    for bad, message in (
        ({"kept": 0.0}, r"amplitude_kept must be in \(0, 1\], got 0"),
        ({"scale_mv": None, "kept": 0.5}, "amplitude_kept below 1 needs scale_mv"),
    ):
        with pytest.raises(ValueError, match=message):
            Amplitude(**{"scale_mv": 0.2, **bad})
    with pytest.raises(ValueError, match=r"scale_mv must be a positive amplitude in mV, got '0\.2'"):
        Amplitude.from_json({"scale_mv": "0.2"})  # a hand-edited config.json: an error, not a TypeError
    assert Amplitude.from_json(Amplitude(0.2, 0.5).to_json()) == Amplitude(0.2, 0.5)
    assert Amplitude.from_json({"scale_mv": 0.2}) == Amplitude(0.2) and Amplitude.from_json({}) == Amplitude()


def test_train_crops_are_random_but_reproducible(ptbxl_store):
    dataset = StoreDataset(str(ptbxl_store), crop_seconds=2.0)
    torch.manual_seed(1)
    a = dataset[list(range(32))]["signal"]
    torch.manual_seed(1)
    b = dataset[list(range(32))]["signal"]
    c = dataset[list(range(32))]["signal"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_eval_windows_are_fixed_and_span_the_segment(ptbxl_store):
    dataset = StoreDataset(str(ptbxl_store), mode="eval", crop_seconds=5.0, windows=3)
    item = dataset[0]
    assert item["signal"].shape == (3, 12, 500)
    assert torch.equal(item["signal"], dataset[0]["signal"])
    full = StoreDataset(str(ptbxl_store), mode="eval")[0]["signal"][0]
    assert torch.allclose(item["signal"][0], full[:, :500]) and torch.allclose(item["signal"][2], full[:, 500:])
    assert torch.allclose(item["signal"][1], full[:, 250:750])


def test_selection_by_fold_split_and_label_set(ptbxl_store):
    store = Store(str(ptbxl_store))
    train = StoreDataset(store, folds=range(1, 9), label_set="superdiagnostic")
    val = StoreDataset(store, splits=["val"], label_set="superdiagnostic")
    assert len(train) + len(val) == store.n_records
    assert set(store.fold[train.records].tolist()) <= set(range(1, 9)) and set(store.fold[val.records]) == {9}
    batch = val[list(range(len(val)))]
    expected = store.label_set("superdiagnostic").matrix[val.records]
    assert np.array_equal(batch["label"].numpy(), expected) and val.classes[3] == "NORM"
    with pytest.raises(StoreError, match="no label set 'nope'"):
        StoreDataset(store, label_set="nope")
    with pytest.raises(StoreError, match="no segments match"):
        StoreDataset(store, folds=[10])


def test_reduced_leads_are_zeroed_and_masked(ptbxl_store):
    dataset = StoreDataset(str(ptbxl_store), mode="eval", leads="I,aVF")
    item = dataset[3]
    assert item["lead_mask"].tolist() == [True, False, False, False, False, True] + [False] * 6
    signal = item["signal"][0]
    assert signal[[0, 5]].abs().sum() > 0 and signal[[1, 2, 3, 4, *range(6, 12)]].abs().sum() == 0


def test_short_records_keep_zero_padding(tmp_path):
    array = np.random.default_rng(0).normal(size=(2, 1, 700)).astype(np.float32)  # 2.8 s at 250 Hz
    np.save(tmp_path / "x.npy", array)
    out = tmp_path / "store"
    prepare_store(
        SOURCE_KINDS["numpy"](str(tmp_path / "x.npy"), fs=250, leads=["II"]),
        str(out),
        PrepConfig(fs=100, segment_seconds=5),
        log=quiet,
    )
    item = StoreDataset(str(out), crop_seconds=4)[0]
    valid = int(Store(str(out)).segment_valid[0])
    assert valid == 280
    assert item["signal"][1, :valid].abs().sum() > 0 and not item["signal"][:, valid:].any()


def test_workers_give_the_same_batches(ptbxl_store):
    dataset = StoreDataset(str(ptbxl_store), mode="eval", crop_seconds=2.5, windows=2, label_set="rhythm")
    one = [b["signal"] for b in dataset.loader(64)]
    two = [b["signal"] for b in dataset.loader(64, num_workers=2)]
    assert len(one) == len(two) and all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    plain = next(iter(DataLoader(dataset, batch_size=64, num_workers=2)))
    assert torch.equal(plain["signal"], one[0]) and plain["label"].shape == (64, len(dataset.classes))


def test_store_pickles_without_its_memory_maps(ptbxl_store):
    store = Store(str(ptbxl_store))
    store.segment(0)
    assert store._maps
    clone = pickle.loads(pickle.dumps(store))
    assert clone._maps == {} and np.array_equal(clone.segment(5), store.segment(5))
    assert len(pickle.dumps(store)) < 1_000_000  # the signals are not copied into the pickle


def test_concat_refuses_different_settings(tmp_path, cinc_store):
    other = tmp_path / "other"
    prepare_store(SOURCE_KINDS["cinc"](str(CINC)), str(other), PrepConfig(band_high=30), log=quiet)
    a, b = StoreDataset(str(cinc_store)), StoreDataset(str(other))
    with pytest.raises(StoreError, match=r"band_high: 40\.0 vs 30\.0"):
        concat_datasets([a, b])
    assert len(concat_datasets([a, StoreDataset(str(cinc_store))])) == 2 * len(a)


def test_training_warms_the_page_cache_for_its_shards_only_when_they_fit(ptbxl_store, monkeypatch):
    advised: list[tuple[str, int]] = []
    real_open = os.open
    opened: dict[int, str] = {}

    def spy_open(path, flags, *args):
        descriptor = real_open(path, flags, *args)
        opened[descriptor] = str(path)
        return descriptor

    monkeypatch.setattr("coreecg.store.os.open", spy_open)

    def spy_fadvise(descriptor, offset, length, advice):
        advised.append((opened[descriptor], advice))

    monkeypatch.setattr("coreecg.store.os.posix_fadvise", spy_fadvise, raising=False)
    store = Store(str(ptbxl_store))
    StoreDataset(store, mode="eval", crop_seconds=2.5)
    assert advised == []  # evaluation reads records in order: no hint needed
    val = StoreDataset(store, crop_seconds=2.5, splits=["val"])
    shards = {store.shard_names[s] for s in np.unique(store.segment_shard[val.segments])}
    assert {path.split("/")[-2] for path, _ in advised} == shards
    assert all(path.endswith("signals.npy") for path, _ in advised)
    advised.clear()
    assert store.prefetch(memory_share=1e-12) is False and advised == []  # too big for memory: no hint
