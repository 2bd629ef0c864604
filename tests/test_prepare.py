"""The store: accounting, segments, labels, resume, partitioning, settings guard, bad input, the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from coreecg.cli import main
from coreecg.prepare import StrictReject, prepare_store, segment_offsets
from coreecg.preprocess import PrepConfig, prepare_record
from coreecg.readers import SOURCE_KINDS
from coreecg.store import Store, StoreError
from tests.conftest import CINC, PTBXL, needs_sample, quiet


def test_segment_offsets_cover_every_sample():
    assert segment_offsets(800, 1000) == [(0, 800)]
    assert segment_offsets(1000, 1000) == [(0, 1000)]
    assert segment_offsets(2500, 1000) == [(0, 1000), (1000, 1000), (1500, 1000)]
    assert segment_offsets(3000, 1000) == [(0, 1000), (1000, 1000), (2000, 1000)]


@needs_sample
def test_ptbxl_store_contents(ptbxl_store):
    store = Store(str(ptbxl_store))
    assert store.manifest["records_in"] == 422 == store.n_records + store.manifest["rejected"]
    assert store.n_segments == 422 and len(store.shard_names) == 3
    records = store.records
    assert records.loc[0, "record_id"] == "1" and records.loc[0, "patient_id"] == "15709"
    assert sorted(set(store.fold.tolist())) == list(range(1, 10))
    assert (records["split"] == "val").sum() == (store.fold == 9).sum() > 0
    superdiagnostic = store.label_set("superdiagnostic")
    assert superdiagnostic.classes == ["CD", "HYP", "MI", "NORM", "STTC"]
    row = superdiagnostic.matrix[0]
    assert row.tolist() == [0, 0, 0, 1, 0]  # record 1 is NORM
    assert superdiagnostic.labelled.all()
    assert store.lead_mask.all()
    # the stored samples are the preprocessed record, not something else
    source = SOURCE_KINDS["ptbxl"](str(PTBXL))
    expected = prepare_record(source.read("1"), store.config).signal
    np.testing.assert_array_equal(store.segment(0), expected)


@needs_sample
def test_cinc_store_long_records_and_lead_masks(cinc_store):
    store = Store(str(cinc_store))
    records = store.records
    assert store.n_records == 60 and store.n_segments > 60
    a1 = int(np.flatnonzero(records["record_id"] == "A0001")[0])
    segments = np.flatnonzero(store.segment_record == a1)
    assert store.segment_offset[segments].tolist() == [0, 500]  # 15 s at 100 Hz: 0-10 s, 5-15 s
    js = int(np.flatnonzero(records["record_id"] == "JS45542")[0])
    assert store.lead_mask[js].tolist() == [True] * 6 + [False] * 6  # flat precordial leads masked
    assert "flat:V1" in records.loc[js, "flags"]
    assert not store.segment(int(np.flatnonzero(store.segment_record == js)[0]))[6:].any()
    scored = store.label_set("scored")
    assert "713427006" in scored.classes and "59118001" not in scored.classes
    assert scored.names["713427006"] == "CRBBB"


@needs_sample
def test_resume_skips_finished_shards_and_gives_the_same_store(tmp_path):
    source = SOURCE_KINDS["cinc"](str(CINC))
    out = tmp_path / "store"
    first = prepare_store(source, str(out), PrepConfig(), shard_size=25, log=quiet)
    signals = [np.load(out / "shards" / name / "signals.npy") for name in ("00000", "00001", "00002")]
    shutil.rmtree(out / "shards" / "00001")
    (out / "manifest.json").unlink()
    messages = []
    second = prepare_store(source, str(out), PrepConfig(), shard_size=25, log=messages.append)
    assert "converts 1 (2 already done)" in messages[0]
    assert (first.stored, first.segments) == (second.stored, second.segments)
    for name, before in zip(("00000", "00001", "00002"), signals, strict=True):
        np.testing.assert_array_equal(np.load(out / "shards" / name / "signals.npy"), before)


@needs_sample
def test_partitioned_conversion_equals_one_run(tmp_path):
    source = SOURCE_KINDS["cinc"](str(CINC))
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    prepare_store(source, str(whole), PrepConfig(), shard_size=20, log=quiet)
    first = prepare_store(source, str(parts), PrepConfig(), shard_size=20, partition=(0, 2), log=quiet)
    assert not first.finalized and not (parts / "manifest.json").exists()
    second = prepare_store(source, str(parts), PrepConfig(), shard_size=20, partition=(1, 2), log=quiet)
    assert second.finalized
    a, b = Store(str(whole)), Store(str(parts))
    assert a.records.equals(b.records)
    for i in range(a.n_segments):
        np.testing.assert_array_equal(a.segment(i), b.segment(i))


def test_different_settings_are_never_mixed(tmp_path, cinc_store):
    source = SOURCE_KINDS["cinc"](str(CINC))
    out = tmp_path / "store"
    prepare_store(source, str(out), PrepConfig(), shard_size=30, partition=(0, 2), log=quiet)
    with pytest.raises(StoreError, match=r"different preprocessing settings \(fs: 100.0 -> 250.0"):
        prepare_store(source, str(out), PrepConfig(fs=250), shard_size=30, log=quiet)
    with pytest.raises(StoreError, match="different source or record list"):
        prepare_store(source, str(out), PrepConfig(), shard_size=10, log=quiet)


def _malformed_corpus(folder):
    """A WFDB folder with one good record and one of each kind of damage."""
    good = PTBXL / "records100/00000/00001_lr"
    header = (good.with_suffix(".hea")).read_text().splitlines()
    data = good.with_suffix(".dat").read_bytes()

    def write(name, lines, payload=data):
        (folder / f"{name}.hea").write_text("\n".join(line.replace("00001_lr", name) for line in lines) + "\n")
        if payload is not None:
            (folder / f"{name}.dat").write_bytes(payload)

    write("good", header)
    write("truncated_signal", header, data[:5000])
    write("truncated_header", header[:6])
    write("missing_signal", header, None)
    write("garbage_header", ["this is not a header", "at all"])
    write("bad_rate", [header[0].replace(" 100 ", " -100 "), *header[1:]])
    write("odd_rate", [header[0].replace(" 100 ", " 314.159265 "), *header[1:]])
    write("unknown_leads", [header[0]] + [line.rsplit(" ", 1)[0] + f" X{i}" for i, line in enumerate(header[1:])])
    flat = np.zeros((1000, 12), dtype="<i2").tobytes()
    write(
        "all_flat",
        [line.rsplit(" ", 3)[0] + " 0 0 " + line.rsplit(" ", 1)[1] if i else line for i, line in enumerate(header)],
        flat,
    )
    nan = np.full((1000, 12), -32768, dtype="<i2").tobytes()
    write("all_nan", header, nan)
    (folder / "empty.hea").write_text("")
    return 11


def test_malformed_records_are_rejected_with_reasons(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    n = _malformed_corpus(folder)
    out = tmp_path / "store"
    result = prepare_store(SOURCE_KINDS["wfdb"](str(folder)), str(out), PrepConfig(), log=quiet)
    assert result.records_in == n == result.stored + result.rejected
    assert result.stored == 1
    rejects = pd.read_csv(out / "rejects.csv").set_index("key")["reason"].to_dict()
    expected = {
        "truncated_signal": "truncated",
        "truncated_header": "signal lines",
        "missing_signal": "does not exist",
        "garbage_header": "not a number",
        "bad_rate": "sampling rate of -100 Hz (expected 1 to 100000 Hz)",
        "odd_rate": "cannot be resampled",
        "unknown_leads": "no known lead names",
        "all_flat": "no usable lead",
        "all_nan": "no usable lead",
        "empty": "empty",
    }
    assert set(rejects) == set(expected)
    for key, words in expected.items():
        assert words in rejects[key], (key, rejects[key])
    with pytest.raises(StrictReject, match="all_flat"):
        prepare_store(SOURCE_KINDS["wfdb"](str(folder)), str(tmp_path / "strict"), PrepConfig(), strict=True, log=quiet)


def test_cli_prepare_and_inspect(tmp_path, capsys):
    array = np.random.default_rng(0).normal(size=(4, 3, 2500)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    (tmp_path / "meta.csv").write_text("id,fold,AF\na,1,1\nb,1,0\nc,9,1\nd,9,0\n")
    out = tmp_path / "store"
    argv = [
        "prepare",
        "numpy",
        str(tmp_path / "x.npy"),
        "--out",
        str(out),
        "--fs",
        "250",
        "--leads",
        "I,II,V2",
        "--meta",
        str(tmp_path / "meta.csv"),
        "--label-set",
        "af",
        "--rate",
        "125",
        "--workers",
        "1",
    ]
    assert main(argv) == 0
    store = Store(str(out))
    assert store.n_records == 4 and store.fs == 125 and store.config.segment_samples == 1250
    assert store.lead_mask[0].tolist() == [True, True] + [False] * 5 + [True] + [False] * 4
    assert store.label_set("af").matrix[:, 0].tolist() == [1, 0, 1, 0]
    assert main(["inspect", str(out)]) == 0
    assert "4 records stored" in capsys.readouterr().out
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stored"] == 4


def test_cli_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["prepare", "wfdb", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "no WFDB records" in err and "Traceback" not in err
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not a finished coreecg store" in capsys.readouterr().err
    assert main(["prepare", "ptbxl", str(PTBXL), "--out", str(tmp_path / "p"), "--band", "50", "40"]) == 2
    assert "band" in capsys.readouterr().err


def test_record_errors_survive_pickling():
    import pickle

    from coreecg.record import RecordError

    error = pickle.loads(pickle.dumps(RecordError("a.hea", "bad header")))
    assert (error.path, error.problem, str(error)) == ("a.hea", "bad header", "a.hea: bad header")


@needs_sample
def test_wfdb_folder_at_500_hz_is_resampled(tmp_path):
    out = tmp_path / "store"
    result = prepare_store(SOURCE_KINDS["wfdb"](str(PTBXL / "records500")), str(out), PrepConfig(), log=quiet)
    assert (result.records_in, result.stored) == (40, 40)
    store = Store(str(out))
    assert store.records.loc[0, "record_id"] == "00000/00001_hr" and store.records.loc[0, "fs_original"] == 500
    assert store.signals(0).shape == (40, 12, 1000)


def test_code15_store_counts_the_filler_row_as_a_reject(tmp_path):
    from tests.test_readers import write_code15

    folder = tmp_path / "code15"
    folder.mkdir()
    write_code15(folder, n=3)
    out = tmp_path / "store"
    result = prepare_store(SOURCE_KINDS["code15"](str(folder)), str(out), PrepConfig(), log=quiet)
    assert (result.records_in, result.stored, result.rejected) == (4, 3, 1)
    store = Store(str(out))
    assert store.records["record_id"].tolist() == ["101", "102", "103"]
    assert store.label_set("code15").matrix.tolist() == [[0] * 6, [0, 1, 0, 0, 0, 0], [0] * 5 + [1]]
