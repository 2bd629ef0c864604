"""Readers on the real sample data: ids, folds, demographics and labels."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest

from coreecg.readers import SOURCE_KINDS
from coreecg.record import RecordError, SourceError
from tests.conftest import CINC, PTBXL, SPLITS, needs_sample


def _merl_rows(task: str) -> dict[str, dict[str, str]]:
    rows = {}
    for split in ("train", "val"):
        with open(SPLITS / task / f"ptbxl_{task}_{split}.csv", newline="") as handle:
            rows.update({row["ecg_id"]: row for row in csv.DictReader(handle)})
    return rows


@pytest.fixture(scope="module")
def ptbxl():
    return SOURCE_KINDS["ptbxl"](str(PTBXL))


@needs_sample
def test_ptbxl_record_and_metadata(ptbxl):
    assert len(ptbxl.record_keys()) == 422
    record = ptbxl.read("1")
    assert record.signal.shape == (12, 1000) and record.fs == 100
    assert (record.patient_id, record.age, record.sex, record.fold, record.split) == ("15709", 56.0, "F", 3, "train")
    assert record.labels["superdiagnostic"] == ["NORM"]
    assert record.labels["rhythm"] == ["SR"] and record.labels["form"] == ["LVOLT"]


@pytest.mark.parametrize(
    ("ours", "merl"),
    [("superdiagnostic", "super_class"), ("subdiagnostic", "sub_class"), ("form", "form"), ("rhythm", "rhythm")],
)
@needs_sample
def test_ptbxl_aggregation_matches_benchmark_tables(ptbxl, ours, merl):
    """Our label aggregation reproduces the published benchmark tables, record by record."""
    tables = _merl_rows(merl)
    classes = [
        c
        for c in next(iter(tables.values()))
        if c not in ("ecg_id", "patient_id", "strat_fold", "filename_lr", "filename_hr", merl)
    ]
    compared = 0
    for key in ptbxl.record_keys():
        if key not in tables:
            continue  # the tables drop records without labels of that task
        record = ptbxl.read(key)
        expected = sorted(c for c in classes if tables[key][c] == "1")
        # The MERL tables drop the underscores of NST_ and _AVB (the PTB-XL spellings we keep).
        assert sorted(c.strip("_") for c in record.labels[ours]) == expected, key
        assert record.fold == int(tables[key]["strat_fold"])
        compared += 1
    assert compared > 100


def test_ptbxl_500hz_variant_rejects_missing_files(ptbxl):
    source = SOURCE_KINDS["ptbxl"](str(PTBXL), variant="hr")
    assert source.read("1").fs == 500
    missing = [
        k for k in source.record_keys() if not (PTBXL / source.rows[k][1]["filename_hr"]).with_suffix(".hea").exists()
    ]
    with pytest.raises(RecordError, match="does not exist") as caught:
        source.read(missing[0])
    assert "ptbxl_database.csv line" in caught.value.path


@needs_sample
def test_label_tables_source(tmp_path):
    source = SOURCE_KINDS["ptbxl-tables"](str(PTBXL), tables=str(SPLITS))
    assert set(source.declared_classes()) == {"super_class", "sub_class", "form", "rhythm"}
    record = source.read("1")
    assert record.labels["super_class"] == ["NORM"] and record.split == "train" and record.fold == 3
    absent = next(
        k for k in source.record_keys() if not (PTBXL / source.records[k]["file"]).with_suffix(".hea").exists()
    )
    with pytest.raises(RecordError, match=r"label row names record .* which does not exist"):
        source.read(absent)


@needs_sample
def test_cinc_labels_demographics_and_databases():
    source = SOURCE_KINDS["cinc"](str(CINC))
    assert len(source.record_keys()) == 60
    record = source.read("CPSC_CPSC-Extra/A0001")
    assert record.record_id == "A0001" and record.source == "CPSC2018"
    assert (record.age, record.sex, record.fs) == (74.0, "M", 500.0)
    assert record.labels["snomed"] == ["59118001"]
    assert record.labels["scored"] == ["713427006"]  # RBBB scored as CRBBB, as the challenge does
    assert source.class_names()["snomed"]["59118001"] == "RBBB"
    databases = {source.read(k).source for k in source.record_keys()}
    assert databases == {"CPSC2018", "CPSC-Extra", "Chapman-Shaoxing", "Ningbo", "Georgia", "PTB-XL"}
    assert np.isnan(source.read("G12EC/E00001").age)  # "Age: NaN" stays unknown


def test_empty_folders_are_clear_errors(tmp_path):
    for kind in ("wfdb", "cinc"):
        with pytest.raises(SourceError, match=r"no .*records"):
            SOURCE_KINDS[kind](str(tmp_path))
    with pytest.raises(SourceError, match="no such folder"):
        SOURCE_KINDS["wfdb"](str(tmp_path / "absent"))


def test_numpy_source(tmp_path):
    array = np.random.default_rng(0).normal(size=(3, 2, 1000)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    (tmp_path / "meta.csv").write_text("id,fold,split,AF,NORM\na,1,train,1,0\nb,9,val,0,1\nc,2,train,0,0\n")
    source = SOURCE_KINDS["numpy"](str(tmp_path / "x.npy"), fs=250, leads=["II", "V1"], meta=str(tmp_path / "meta.csv"))
    assert source.record_keys() == ["a", "b", "c"]
    record = source.read("b")
    np.testing.assert_array_equal(record.signal, array[1])
    assert (record.fold, record.split, record.labels) == (9, "val", {"labels": ["NORM"]})
    with pytest.raises(SourceError, match="3 leads per record but 2"):
        np.save(tmp_path / "y.npy", np.zeros((2, 3, 100)))
        SOURCE_KINDS["numpy"](str(tmp_path / "y.npy"), fs=250, leads=["I", "II"])
    with pytest.raises(SourceError, match="needs its sampling rate"):
        SOURCE_KINDS["numpy"](str(tmp_path / "x.npy"))


def write_code15(folder, n=3, seed=0) -> np.ndarray:
    """A small file in the CODE-15% layout: zero-padded tracings and a filler row of zeros."""
    rng = np.random.default_rng(seed)
    tracings = np.zeros((n + 1, 4096, 12), dtype=np.float32)
    tracings[:n, 48:4048] = rng.normal(size=(n, 4000, 12))
    with h5py.File(folder / "exams_part0.hdf5", "w") as handle:
        handle["tracings"] = tracings
        handle["exam_id"] = np.array([*range(101, 101 + n), 0])
    rows = ["exam_id,age,is_male,1dAVb,RBBB,LBBB,SB,ST,AF,patient_id"]
    rows += [
        f"{101 + i},{50 + i},{'True' if i % 2 else 'False'},False,{i == 1},False,False,False,{i == 2},{7 + i}"
        for i in range(n)
    ]
    (folder / "exams.csv").write_text("\n".join(rows) + "\n")
    return tracings


def test_code15_source(tmp_path):
    tracings = write_code15(tmp_path)
    source = SOURCE_KINDS["code15"](str(tmp_path))
    assert len(source.record_keys()) == 4
    record = source.read("exams_part0.hdf5:1")
    assert record.record_id == "102" and record.fs == 400 and record.signal.shape == (12, 4000)
    np.testing.assert_allclose(record.signal, tracings[1, 48:4048].T, rtol=1e-6)
    assert (record.sex, record.age, record.patient_id, record.labels) == ("M", 51.0, "8", {"code15": ["RBBB"]})
    with pytest.raises(RecordError, match="all zeros"):
        source.read("exams_part0.hdf5:3")
