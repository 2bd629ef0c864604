"""Files nobody vouches for: every one is either used or refused with one line naming it and the problem.

Headers that reach outside their record or declare absurd sizes, containers that are not what their
name says, CinC 2020 headers as first published, damaged model folders and stores, and the small
command-line slips a new user makes. Nothing here may end in a traceback, a MemoryError, a silent
drop or a stored ECG that is not one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from safetensors.torch import load_file, save_file

from coreecg.cli import main
from coreecg.config import ConfigError
from coreecg.model import EncoderConfig
from coreecg.pretrained import load_encoder
from coreecg.readers import SOURCE_KINDS
from coreecg.readers.wfdb_format import parse_header, read_signals
from coreecg.record import RecordError
from coreecg.store import Store, StoreError
from tests.conftest import CINC, PTBXL

RECORD = PTBXL / "records100" / "00000" / "00001_lr"  # format 16, 12 leads, 100 Hz, 1000 samples
CPSC = CINC / "CPSC_CPSC-Extra" / "A0001"  # MAT v4 'val', 12 × 7500 int16, '#Dx: 59118001'


def _wfdb_record(folder: Path, header: str | None = None, name: str = "r") -> Path:
    """A copy of a real PTB-XL record named ``name`` in ``folder``, its header optionally rewritten."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(RECORD.with_suffix(".dat"), folder / f"{name}.dat")
    text = RECORD.with_suffix(".hea").read_text().replace("00001_lr.dat", f"{name}.dat").replace("00001_lr", name)
    (folder / f"{name}.hea").write_text(header(text) if header else text)
    return folder / f"{name}.hea"


def _cinc_record(folder: Path, dx: str | None = "59118001", name: str = "A0001", mat: bytes | None = None) -> Path:
    """A copy of a real CPSC2018 record, its '#Dx:' line replaced (None: removed) and its .mat optionally replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = CPSC.with_suffix(".hea").read_text().replace("A0001", name).splitlines()
    lines = [line for line in lines if not line.startswith("#Dx")] + ([f"#Dx: {dx}"] if dx is not None else [])
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    (folder / f"{name}.mat").write_bytes(mat if mat is not None else CPSC.with_suffix(".mat").read_bytes())
    return folder / f"{name}.hea"


def _refusal(header: Path) -> str:
    with pytest.raises(RecordError) as caught:
        read_signals(parse_header(str(header)))
    return str(caught.value)


# -- headers cannot reach outside their record, nor make the reader allocate ------------------------


@pytest.mark.parametrize("target", ["../secret.dat", "/etc/passwd", "sub/r.dat", "-"])
def test_a_header_cannot_name_a_signal_file_outside_its_folder(tmp_path, target):
    shutil.copy(RECORD.with_suffix(".dat"), tmp_path / "secret.dat")
    header = _wfdb_record(tmp_path / "rec", lambda text: text.replace("r.dat", target))
    assert "must sit beside the header" in _refusal(header)


@pytest.mark.parametrize(
    ("record_line", "signal_format", "reason"),
    [
        (
            "r 12 100 1000000000000000",
            "16",
            "signal file is truncated: 24000 bytes, the header needs 24000000000000000",
        ),
        ("r 12 100 1000", "16+100000000000", "byte offset 100000000000 is beyond the end of the file"),
        ("r 12 0.0001 1000", "16", "sampling rate of 0.0001 Hz (expected 1 to 100000 Hz)"),
        ("r 100000000 100 1000", "16", "declares 100000000 signals"),
        ("r 12 100 -5", "16", "declares -5 samples"),
    ],
)
def test_declared_sizes_are_checked_before_anything_is_allocated(tmp_path, record_line, signal_format, reason):
    def rewrite(text: str) -> str:
        lines = text.splitlines()
        return "\n".join([record_line] + [line.replace("r.dat 16", f"r.dat {signal_format}") for line in lines[1:]])

    header = _wfdb_record(tmp_path, rewrite)
    with pytest.raises(RecordError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_signals(parse_header(str(header)))


def test_a_model_too_large_to_be_an_ecg_encoder_is_refused_before_allocation(tmp_path):
    with pytest.raises(ConfigError, match=r"encoder dim 65536 is outside 1\.\.8192"):
        EncoderConfig(dim=65536, heads=4)
    with pytest.raises(ConfigError, match="exceeds 2e"):
        EncoderConfig(dim=8192, depth=256, heads=8)
    assert main(["pretrain", "--store", "x", "--out", str(tmp_path / "r"), "model.dim=65536", "model.heads=4"]) == 2


# -- CinC 2020 as published ---------------------------------------------------------------------------


def test_cinc_2020_abbreviations_map_to_snomed_and_an_empty_dx_is_unlabelled(tmp_path):
    folder = tmp_path / "cinc"
    _cinc_record(folder, "RBBB,AF", name="A0001")
    _cinc_record(folder, "Normal", name="A0002")
    _cinc_record(folder, "I-AVB, PVC", name="A0003")
    _cinc_record(folder, "", name="A0004")
    _cinc_record(folder, None, name="A0005")
    _cinc_record(folder, "59118001", name="A0006")
    source = SOURCE_KINDS["cinc"](str(folder), dx_mapping=str(CINC))
    labels = {key: source.read(key).labels for key in source.record_keys()}
    assert labels["A0001"]["snomed"] == ["164889003", "59118001"]
    assert labels["A0002"]["snomed"] == ["426783006"]
    assert labels["A0003"]["snomed"] == ["164884008", "270492004"]  # CPSC's PVC: ventricular ectopics
    assert labels["A0004"] == {} and labels["A0005"] == {}  # unlabelled, not negative for every class
    assert labels["A0006"] == {"snomed": ["59118001"], "scored": ["713427006"]}  # scored as one with CRBBB
    _cinc_record(folder, "RBBB,XYZ", name="A0007")
    with pytest.raises(RecordError, match=r"'#Dx:' names \['XYZ'\]"):
        SOURCE_KINDS["cinc"](str(folder), dx_mapping=str(CINC)).read("A0007")


def test_cinc_2020_store_keeps_every_record_and_an_empty_store_is_an_error(tmp_path, capsys):
    folder = tmp_path / "cinc"
    for i, dx in enumerate(["RBBB", "AF,STD", "Normal"], start=1):
        _cinc_record(folder, dx, name=f"A{i:04d}")
    out = tmp_path / "store"
    assert main(["prepare", "cinc", str(folder), "--out", str(out), "--dx-mapping", str(CINC), "--workers", "1"]) == 0
    store = Store(str(out))
    assert store.n_records == 3 and store.manifest["label_sets"]["snomed"]["labelled"] == 3
    capsys.readouterr()
    empty = tmp_path / "unusable"
    _cinc_record(empty, "RBBB", mat=b"not a MAT file at all")
    assert main(["prepare", "cinc", str(empty), "--out", str(tmp_path / "empty"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 records could be stored" in err and "A0001.mat: not a" in err
    with pytest.raises(StoreError, match="not a finished coreecg store"):
        Store(str(tmp_path / "empty"))


def test_records_with_the_same_name_in_two_folders_get_distinct_ids(tmp_path):
    _cinc_record(tmp_path / "one", "RBBB")
    _cinc_record(tmp_path / "two", "AF")
    _cinc_record(tmp_path / "two", "AF", name="A0002")
    source = SOURCE_KINDS["cinc"](str(tmp_path), dx_mapping=str(CINC))
    ids = [source.read(key).record_id for key in source.record_keys()]
    assert ids == ["one/A0001", "two/A0001", "A0002"]


def test_a_header_that_drops_the_mat_extension_still_finds_its_signal(tmp_path):
    header = _cinc_record(tmp_path, "RBBB")
    header.write_text(header.read_text().replace("A0001.mat ", "A0001 "))  # as CinC 2021's reduced-lead headers
    signal, _ = read_signals(parse_header(str(header)))
    expected, _ = read_signals(parse_header(str(CPSC.with_suffix(".hea"))))
    assert np.array_equal(signal, expected)


# -- containers are what they claim ----------------------------------------------------------------------


def _mat_v5(path: Path, array: np.ndarray) -> bytes:
    scipy.io.savemat(path, {"val": array})
    return path.read_bytes()


def _mat_v4(path: Path, name: str, array: np.ndarray) -> bytes:
    scipy.io.savemat(path, {name: array}, format="4")
    return path.read_bytes()


def test_mat_files_that_are_not_mat_v4_val_are_refused_with_the_reason(tmp_path):
    val = scipy.io.loadmat(str(CPSC.with_suffix(".mat")))["val"]
    cases = {
        "v5": (_mat_v5(tmp_path / "v5.mat", val), "a MAT v5/v7 file"),
        "text": (b"I am a text file with a .mat name\n" * 10, "not a little-endian MAT v4 numeric matrix"),
        "short": (b"MAT", "shorter than its header"),
        "complex": (_mat_v4(tmp_path / "c.mat", "val", val.astype(np.complex128)), "the MAT v4 matrix is complex"),
        "other name": (_mat_v4(tmp_path / "o.mat", "abc", val), "holds b'abc', not the matrix 'val'"),
        "double": (_mat_v4(tmp_path / "d.mat", "val", val.astype(np.float64)), "holds double, which does not hold"),
        "transposed": (_mat_v4(tmp_path / "t.mat", "val", val.T.copy()), "'val' is 7500 × 12"),
    }
    for case, (content, reason) in cases.items():
        header = _cinc_record(tmp_path / case.replace(" ", "-"), "RBBB", mat=content)
        assert reason in _refusal(header), case
    header = _cinc_record(tmp_path / "big-endian", "RBBB")
    mat = bytearray(header.with_suffix(".mat").read_bytes())
    mat[0:4] = np.int32(1030).tobytes()
    header.with_suffix(".mat").write_bytes(bytes(mat))
    assert "a big-endian MAT v4 file" in _refusal(header)


def test_numpy_containers_that_are_not_real_arrays_are_refused(tmp_path, capsys):
    leads = "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"
    np.savez(tmp_path / "pair.npz", a=np.zeros((2, 12, 1000)))
    (tmp_path / "pair.npz").rename(tmp_path / "saved-as.npy")
    np.save(tmp_path / "complex.npy", np.zeros((2, 12, 1000), dtype=np.complex64))
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object))
    for name, reason in (
        ("saved-as.npy", "not a readable .npy array"),
        ("complex.npy", "is not real numbers"),
        ("objects.npy", "not a readable .npy array"),
    ):
        code = main(
            [
                "prepare",
                "numpy",
                str(tmp_path / name),
                "--fs",
                "100",
                "--leads",
                leads,
                "--out",
                str(tmp_path / f"store-{name}"),
            ]
        )
        assert code == 2, name
        err = capsys.readouterr().err
        assert reason in err and name in err and "Traceback" not in err, err


def test_implausible_amplitudes_mask_their_lead_and_never_reach_the_store(tmp_path):
    signal = np.zeros((3, 12, 1000))
    t = np.arange(1000) / 100
    signal[:] = np.sin(2 * np.pi * 1.2 * t)  # a 1 mV wave on every lead
    signal[1, 0] *= 1e5  # lead I of record 1: a wrong gain
    signal[2] *= 1e5  # every lead of record 2
    path = tmp_path / "x.npy"
    np.save(path, signal)
    out = tmp_path / "store"
    leads = "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"
    assert main(["prepare", "numpy", str(path), "--fs", "100", "--leads", leads, "--out", str(out)]) == 0
    store = Store(str(out))
    assert store.n_records == 2 and store.records["flags"].tolist() == ["", "implausible:I"]
    assert not store.lead_mask[1, 0] and store.lead_mask[1, 1:].all()
    assert np.abs(store.signals(0)).max() < 5
    assert "no usable lead: implausible:I" in (out / "rejects.csv").read_text()
    float16 = tmp_path / "half"
    assert (
        main(
            [
                "prepare",
                "numpy",
                str(path),
                "--fs",
                "100",
                "--leads",
                leads,
                "--out",
                str(float16),
                "--dtype",
                "float16",
            ]
        )
        == 0
    )
    assert np.isfinite(Store(str(float16)).signals(0)).all()


# -- every saved model read gives one clear line ---------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("synthetic") / "store"
    assert main(["prepare", "synthetic", "--records", "20", "--fs", "100", "--out", str(store), "--workers", "1"]) == 0
    return store


@pytest.fixture(scope="module")
def saved_encoder(synthetic_store, tmp_path_factory) -> Path:
    from coreecg.evaluation.features import random_encoder

    folder = tmp_path_factory.mktemp("encoder") / "encoder"
    random_encoder("cpu", Store(str(synthetic_store)), crop_seconds=2.5, seed=0).save(str(folder))
    return folder


def _damage_config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def _broken_copies(saved: Path, root: Path) -> dict[str, tuple[Path, str]]:
    cases: dict[str, tuple[Path, str]] = {}

    def case(name: str, reason: str) -> Path:
        folder = root / name
        shutil.copytree(saved, folder)
        cases[name] = (folder, reason)
        return folder

    weights = (saved / "model.safetensors").read_bytes()
    (case("truncated weights", "not a readable safetensors file") / "model.safetensors").write_bytes(weights[:5000])
    (case("empty weights", "not a readable safetensors file") / "model.safetensors").write_bytes(b"")
    state = load_file(str(saved / "model.safetensors"))
    save_file(
        {**state, "patch_embed.weight": torch.full_like(state["patch_embed.weight"], float("nan"))},
        str(case("nan weights", "non-finite weights in patch_embed.weight") / "model.safetensors"),
    )
    save_file(
        {k: v for k, v in state.items() if k != "norm.weight"},
        str(case("missing tensor", "missing: norm.weight") / "model.safetensors"),
    )
    _damage_config(case("other size", "wrong shape"), lambda c: c["encoder"].update(dim=64))
    _damage_config(
        case("extra key", "unknown key 'encoder.dimm'; did you mean 'dim'?"), lambda c: c["encoder"].update(dimm=3)
    )
    _damage_config(
        case("wrong type", "encoder.depth: expected an integer, got 'four'"),
        lambda c: c["encoder"].update(depth="four"),
    )
    _damage_config(case("no preprocessing", "section 'preprocessing' is missing"), lambda c: c.pop("preprocessing"))
    _damage_config(case("bad crop", "crop_seconds must be a number"), lambda c: c.update(crop_seconds="long"))
    _damage_config(case("huge", "encoder dim 65536 is outside"), lambda c: c["encoder"].update(dim=65536))
    (case("not json", "not valid JSON") / "config.json").write_text("{ this is not json")
    (case("binary json", "not valid JSON") / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    _damage_config(case("other format", "not a coreecg encoder"), lambda c: c.update(format="keras"))
    return cases


def test_every_damaged_encoder_folder_is_refused_in_one_line(saved_encoder, synthetic_store, tmp_path, capsys):
    load_encoder(str(saved_encoder))  # the undamaged folder loads
    store = synthetic_store
    for name, (folder, reason) in _broken_copies(saved_encoder, tmp_path).items():
        with pytest.raises(ValueError) as caught:
            load_encoder(str(folder))
        assert reason in str(caught.value) and str(folder) in str(caught.value), (name, str(caught.value))
        assert main(["embed", "--encoder", str(folder), "--store", str(store), "--out", str(tmp_path / "e")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err and "Traceback" not in err, (name, err)


# -- stores: damage is found, named and repaired ---------------------------------------------------------


def _ptbxl_store(out: Path) -> list[str]:
    return ["prepare", "ptbxl", str(PTBXL), "--out", str(out), "--shard-size", "30", "--workers", "1"]


def test_a_damaged_store_is_reported_named_when_read_and_repaired_by_prepare(tmp_path, capsys):
    out = tmp_path / "store"
    assert main(_ptbxl_store(out)) == 0
    assert main(["inspect", str(out), "--verify"]) == 0
    signals = out / "shards" / "00001" / "signals.npy"
    signals.write_bytes(signals.read_bytes()[:-1000])
    (out / "shards" / "00002" / "done.json").unlink()
    (out / "shards" / "00000.tmp-4242").mkdir()
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out}/shards/00001: signals.npy: " in err and "truncated or replaced" in err
    assert f"{out}/shards/00002: incomplete (no done.json)" in err
    assert f"{out}/shards/00000.tmp-4242: left over" in err
    with pytest.raises(StoreError, match=r"00001/signals.npy: damaged shard .*re-run the coreecg prepare"):
        Store(str(out)).signals(1)
    assert main(_ptbxl_store(out)) == 0  # repairs, then finishes
    assert "is damaged (incomplete (no done.json)); converting it again" in capsys.readouterr().err
    assert main(["inspect", str(out), "--verify"]) == 0
    assert not (out / "shards" / "00000.tmp-4242").exists()
    store = Store(str(out))
    assert (
        store.n_records == len(SOURCE_KINDS["ptbxl"](str(PTBXL)).record_keys()) and np.isfinite(store.signals(1)).all()
    )
    first = out / "shards" / "00000" / "signals.npy"
    intact = first.read_bytes()
    damaged = bytearray(intact)
    damaged[damaged.index(b"{")] = ord("x")  # a damaged .npy header, same size (found by the fuzz suite)
    first.write_bytes(bytes(damaged))
    with pytest.raises(StoreError, match=r"00000/signals.npy: not a readable .npy array"):
        Store(str(out)).signals(0)
    first.write_bytes(intact)
    flipped = bytearray(signals.read_bytes())
    flipped[-5] ^= 0xFF  # same size, other content: only the hash sees it
    signals.write_bytes(bytes(flipped))
    assert main(["inspect", str(out)]) == 0
    assert main(["inspect", str(out), "--verify"]) == 2
    assert "content differs from its SHA-256" in capsys.readouterr().err


def test_a_broken_manifest_or_index_is_named(tmp_path, capsys):
    out = tmp_path / "store"
    assert main(_ptbxl_store(out)) == 0
    index = (out / "index.npz").read_bytes()
    (out / "index.npz").write_bytes(index[:100])
    with pytest.raises(StoreError, match=r"index.npz: unreadable"):
        Store(str(out))
    (out / "manifest.json").write_text('{"format_version": 1, "config": {"fs": "fast"}}')
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 2
    assert "manifest.json: malformed" in capsys.readouterr().err


# -- command-line slips ----------------------------------------------------------------------------------


def test_small_command_line_slips_get_a_clear_line(tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["prepare", "synthetic", "--records", "10", "--out", str(out), "--segment-seconds", "0.001"]) == 2
    assert "segment length must be at least 1 s" in capsys.readouterr().err and not out.exists()
    assert main(["prepare", "wfdb", str(PTBXL), "--out", str(out), "--shard", "-1/4"]) == 2
    assert "--shard -1/4: need 0 <= i < n" in capsys.readouterr().err
    np.save(tmp_path / "a.npy", np.zeros((2, 12, 1000)))
    assert (
        main(
            [
                "prepare",
                "numpy",
                str(tmp_path / "a.npy"),
                "--fs",
                "0",
                "--leads",
                "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--fs 0: a sampling rate must be" in capsys.readouterr().err
    assert main(["pretrain", "--store", "x", "--out", str(tmp_path / "r"), "train.lr_max=1"]) == 2
    assert "unknown key 'train.lr_max'; did you mean 'lr'?" in capsys.readouterr().err
    assert main(["pretrain", "--store", "x", "--out", str(tmp_path / "r"), "lr=1"]) == 2
    assert "did you mean 'train.lr'?" in capsys.readouterr().err


def test_embedding_a_folder_without_a_usable_record_names_the_folder_and_the_reasons(saved_encoder, tmp_path, capsys):
    folder = tmp_path / "records"
    _wfdb_record(folder, lambda text: text.replace("r 12 100", "r 12 0.0001"))
    assert main(["embed", "--encoder", str(saved_encoder), "--wfdb", str(folder), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert f"{folder}: no usable record" in err and "sampling rate of 0.0001 Hz" in err
    assert "rejects.csv" not in err  # no temporary store that is gone by the time the user reads this
    _wfdb_record(folder, name="good")
    assert main(["embed", "--encoder", str(saved_encoder), "--wfdb", str(folder), "--out", str(tmp_path / "e")]) == 0
    assert "skipped " in capsys.readouterr().err  # the unusable record is listed, with its reason


# -- run and benchmark folders ---------------------------------------------------------------------------


def test_damaged_benchmark_cells_are_named_and_computed_again(tmp_path, capsys):
    out = tmp_path / "probe"
    args = [
        "probe",
        "--random-init",
        "cpu",
        "--store",
        str(_synthetic(tmp_path)),
        "--task",
        "condition",
        "--train",
        "1-8",
        "--val",
        "9",
        "--bootstrap",
        "20",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())
    (cell,) = sorted((out / "cells").glob("*.npz"))
    cell.write_bytes(cell.read_bytes()[:100])
    capsys.readouterr()
    assert main(["compare", str(out), "--a", "random-init", "--b", "random-init"]) == 2
    assert f"{cell}: unreadable (BadZipFile" in capsys.readouterr().err
    assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 2
    assert f"{cell}: unreadable" in capsys.readouterr().err
    assert main(args) == 0  # the damaged cell is computed again, to the same figures
    assert "computing the cell again" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["aggregate"] == first["aggregate"]
    (out / "results.json").write_text('{"cells": ')
    assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 2
    assert f"{out}/results.json: not valid JSON" in capsys.readouterr().err


def _synthetic(tmp_path: Path) -> Path:
    store = tmp_path / "synthetic"
    if not store.exists():
        assert main(["prepare", "synthetic", "--records", "60", "--fs", "100", "--out", str(store)]) == 0
    return store


def test_damaged_run_folders_are_named_by_report(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: [unclosed\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert f"{run}/config.yaml: not valid YAML" in err and err.count("\n") == 1
    (run / "config.yaml").write_text("model: {}\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"loss": 1}\n{"step": 3,\n')
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    assert f"{run}/metrics.jsonl line 2: not a metrics row" in capsys.readouterr().err


def test_an_unforeseen_failure_is_one_line_that_says_it_is_a_bug(monkeypatch, tmp_path, capsys):
    import coreecg.cli as cli

    def broken(args):
        raise KeyError("something nobody foresaw")

    monkeypatch.setattr(cli, "run_inspect", broken)
    assert main(["inspect", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (KeyError" in err and "COREECG_TRACEBACK=1" in err
    monkeypatch.setenv("COREECG_TRACEBACK", "1")
    with pytest.raises(KeyError):
        main(["inspect", str(tmp_path)])
