"""Property-based fuzzing of every file a user can hand coreecg: mutated real headers, signal files, MAT
containers, saved encoders and store shards.

Each property states what must hold whatever the bytes: a record is either prepared into a plausible
ECG or rejected with a reason naming its file (never another exception, which on the command line is
a traceback); records in = stored + rejected; a model folder either loads with finite weights or is
refused with its file named; a store either reads or names the damaged file. Seeded (``derandomize``)
and bounded, so the suite is the same on every run and takes well under a minute. A deeper, random
campaign: ``COREECG_FUZZ_SCALE=20 COREECG_FUZZ_SEED=random pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from coreecg.prepare import convert_shard, prepare_store
from coreecg.preprocess import MAX_ABS_MV, PrepConfig, prepare_record
from coreecg.pretrained import load_encoder
from coreecg.readers import SOURCE_KINDS
from coreecg.record import RecordError
from coreecg.store import Store, StoreError
from tests.conftest import CINC, PTBXL

SCALE = int(os.environ.get("COREECG_FUZZ_SCALE", "1"))
FUZZ = settings(
    derandomize=os.environ.get("COREECG_FUZZ_SEED") != "random",
    max_examples=300 * SCALE,
    deadline=None,
    database=None,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
RECORD = PTBXL / "records100" / "00000" / "00001_lr"
CPSC = CINC / "CPSC_CPSC-Extra" / "A0001"
CONFIG = PrepConfig()

# Tokens a hostile or damaged header carries in place of a real one.
ODD_TOKENS = [
    "",
    "0",
    "-1",
    "1e15",
    "99999999999999999999",
    "0.0001",
    "nan",
    "inf",
    "-inf",
    "abc",
    "../x.dat",
    "/etc/passwd",
    "-",
    "16+100000000000",
    "212",
    "8x2",
    "16:3",
    "1000(5)/uV",
    "0/mV",
    "1e400/mV",
    "r.dat",
    "\x00",
    "é",
    "#",
    "x" * 300,
]


def _is_clean_outcome(source, key: str, folder: Path) -> str:
    """'stored' or 'rejected'; any exception other than a RecordError naming a file in ``folder`` fails."""
    try:
        prepared = prepare_record(source.read(key), CONFIG)
    except RecordError as error:
        assert error.problem, "a reject without a reason"
        assert str(folder) in error.path, f"the reason names {error.path!r}, not a file of the record"
        return "rejected"
    signal = prepared.signal
    assert signal.shape[0] == 12 and signal.shape[1] >= CONFIG.min_record_seconds * CONFIG.fs
    assert np.isfinite(signal).all() and np.isfinite(prepared.record_std)
    assert np.abs(signal).max() <= 2 * MAX_ABS_MV  # the band-pass can overshoot a bounded input a little
    assert prepared.lead_mask.any()
    return "stored"


def _mutated_lines(text: str, data) -> str:
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        choice = data.draw(st.sampled_from(["token", "drop", "duplicate", "cut", "bytes"]))
        i = data.draw(st.integers(0, len(lines) - 1)) if lines else 0
        if choice == "token" and lines:
            tokens = lines[i].split(" ")
            j = data.draw(st.integers(0, len(tokens) - 1))
            tokens[j] = data.draw(st.sampled_from(ODD_TOKENS) | st.text(max_size=12))
            lines[i] = " ".join(tokens)
        elif choice == "drop" and lines:
            del lines[i]
        elif choice == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif choice == "cut":
            joined = "\n".join(lines)
            lines = joined[: data.draw(st.integers(0, len(joined)))].splitlines()
        elif choice == "bytes" and lines:
            lines[i] += data.draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
    return "\n".join(lines) + "\n"


def _mutated_bytes(content: bytes, data, head: int | None = None) -> bytes:
    """Truncated, extended, or with bytes flipped (in the first ``head`` bytes, where headers live)."""
    out = bytearray(content)
    choice = data.draw(st.sampled_from(["truncate", "extend", "flip", "flip", "zero"]))
    if choice == "truncate":
        return bytes(out[: data.draw(st.integers(0, max(0, len(out) - 1)))])
    if choice == "extend":
        return bytes(out) + data.draw(st.binary(min_size=1, max_size=64))
    if choice == "zero":
        return b""
    span = min(len(out), head or len(out))
    for _ in range(data.draw(st.integers(1, 8))):
        if span:
            out[data.draw(st.integers(0, span - 1))] = data.draw(st.integers(0, 255))
    return bytes(out)


@FUZZ
@given(data=st.data())
def test_mutated_wfdb_headers_and_signals_are_stored_sanely_or_rejected_with_a_reason(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("wfdb")
    shutil.copy(RECORD.with_suffix(".hea"), folder / "00001_lr.hea")
    shutil.copy(RECORD.with_suffix(".dat"), folder / "00001_lr.dat")
    header = RECORD.with_suffix(".hea").read_text()
    (folder / "00001_lr.hea").write_text(_mutated_lines(header, data), encoding="utf-8", errors="surrogatepass")
    if data.draw(st.booleans()):
        (folder / "00001_lr.dat").write_bytes(_mutated_bytes(RECORD.with_suffix(".dat").read_bytes(), data))
    source = SOURCE_KINDS["wfdb"](str(folder))
    _is_clean_outcome(source, "00001_lr", folder)


@FUZZ
@given(data=st.data())
def test_mutated_cinc_headers_and_mat_files_are_stored_sanely_or_rejected_with_a_reason(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("cinc")
    header = CPSC.with_suffix(".hea").read_text()
    if data.draw(st.booleans()):
        header = _mutated_lines(header, data)
    (folder / "A0001.hea").write_text(header, encoding="utf-8", errors="surrogatepass")
    mat = CPSC.with_suffix(".mat").read_bytes()
    (folder / "A0001.mat").write_bytes(_mutated_bytes(mat, data, head=40) if data.draw(st.booleans()) else mat)
    source = SOURCE_KINDS["cinc"](str(folder), dx_mapping=str(CINC))
    _is_clean_outcome(source, "A0001", folder)


@settings(FUZZ, max_examples=40 * SCALE)
@given(data=st.data())
def test_a_folder_of_damaged_records_is_fully_accounted_for(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("mixed")
    count = data.draw(st.integers(2, 5))
    for i in range(count):
        header = RECORD.with_suffix(".hea").read_text().replace("00001_lr", f"r{i}")
        if data.draw(st.booleans()):
            header = _mutated_lines(header, data)
        (folder / f"r{i}.hea").write_text(header, encoding="utf-8", errors="surrogatepass")
        shutil.copy(RECORD.with_suffix(".dat"), folder / f"r{i}.dat")
    source = SOURCE_KINDS["wfdb"](str(folder))
    done = convert_shard(source, source.record_keys(), str(folder / "shard"), CONFIG, strict=False)
    assert done["stored"] + done["rejected"] == len(source.record_keys())
    rejects = [json.loads(line) for line in (folder / "shard" / "rejects.jsonl").read_text().splitlines()]
    assert all(r["reason"] and not r["reason"].startswith("unexpected") for r in rejects), rejects


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory) -> Path:
    from coreecg.evaluation.features import random_encoder

    out = tmp_path_factory.mktemp("fuzz-store") / "store"
    prepare_store(
        SOURCE_KINDS["synthetic"](records=12, fs=100.0, seconds=10.0, seed=0), str(out), CONFIG, log=lambda _: None
    )
    folder = tmp_path_factory.mktemp("fuzz-encoder") / "encoder"
    random_encoder("cpu", Store(str(out)), crop_seconds=2.5, seed=0).save(str(folder))
    return folder


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@settings(FUZZ, max_examples=60 * SCALE)
@given(data=st.data())
def test_mutated_encoder_folders_load_with_finite_weights_or_are_refused_naming_the_file(
    encoder_folder, tmp_path_factory, data
):
    folder = tmp_path_factory.mktemp("mutated") / "encoder"
    shutil.copytree(encoder_folder, folder)
    if data.draw(st.booleans()):
        weights = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(_mutated_bytes(weights, data, head=600))
    else:
        config = json.loads((folder / "config.json").read_text())
        section = data.draw(st.sampled_from([None, "encoder", "preprocessing"]))
        target = config if section is None else config[section]
        key = data.draw(st.sampled_from(sorted(target)) | st.text(max_size=8))
        target[key] = data.draw(JSON_VALUES)
        (folder / "config.json").write_text(json.dumps(config))
    try:
        model = load_encoder(str(folder))
    except ValueError as error:  # ConfigError and StateFileError included
        assert str(folder) in str(error), str(error)
        return
    assert all(bool(p.isfinite().all()) for p in model.parameters())


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz-shards") / "store"
    prepare_store(SOURCE_KINDS["ptbxl"](str(PTBXL)), str(out), CONFIG, shard_size=150, log=lambda _: None)
    return out


@settings(FUZZ, max_examples=60 * SCALE)
@given(data=st.data())
def test_damaged_stores_read_correctly_or_name_the_damaged_file(small_store, tmp_path_factory, data):
    out = tmp_path_factory.mktemp("damaged") / "store"
    shutil.copytree(small_store, out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    name = data.draw(st.sampled_from(files))
    (out / name).write_bytes(_mutated_bytes((out / name).read_bytes(), data, head=200))
    try:
        store = Store(str(out))
        problems = store.verify(content=True)
        for shard in range(len(store.shard_names)):
            store.signals(shard)
        for label_set in store.label_set_names:
            store.label_set(label_set)
        store.records  # noqa: B018 (reading it is the test)
    except StoreError as error:
        assert str(out) in str(error), str(error)
        return
    recorded = set(store.manifest.get("files", {})) | {
        f"shards/{s['name']}/{f}" for s in store.manifest["shards"] for f in s.get("files", {})
    }
    if name in recorded and (out / name).read_bytes() != (small_store / name).read_bytes():
        folder, file = name.rsplit("/", 1) if "/" in name else ("", name)
        assert any(file in p and folder in p for p in problems), (name, problems)
