"""Our WFDB decoder against the wfdb package, and its errors on malformed records."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import wfdb

from coreecg.readers.wfdb_format import parse_header, read_signals
from coreecg.record import RecordError
from tests.conftest import CINC, PTBXL


def _ours(record_path: str) -> np.ndarray:
    signal, problems = read_signals(parse_header(record_path + ".hea"))
    assert problems == []  # real files carry correct checksums
    return signal


@pytest.mark.parametrize(
    "record",
    [
        PTBXL / "records100/00000/00001_lr",
        PTBXL / "records500/00000/00001_hr",
        CINC / "CPSC_CPSC-Extra/A0001",
        CINC / "G12EC/E00001",
        CINC / "ChapmanShaoxing_Ningbo/JS45542",
        CINC / "PTB_PTBXL/HR00004",
    ],
)
def test_real_records_match_wfdb(record):
    reference, fields = wfdb.rdsamp(str(record))
    ours = _ours(str(record))
    assert ours.shape == reference.T.shape
    np.testing.assert_allclose(ours, reference.T, atol=1e-9)
    assert parse_header(str(record) + ".hea").fs == fields["fs"]


@pytest.mark.parametrize("fmt", ["212", "16", "80", "24", "32"])
def test_sample_formats_match_wfdb(tmp_path, fmt):
    rng = np.random.default_rng(int(fmt))
    digital = rng.integers(-2000, 2000, size=(777, 3)).astype(np.int64)
    if fmt == "80":
        digital //= 20
    wfdb.wrsamp(
        "rec",
        fs=250,
        units=["mV"] * 3,
        sig_name=["I", "II", "V1"],
        d_signal=digital,
        fmt=[fmt] * 3,
        adc_gain=[200.0] * 3,
        baseline=[5, 0, -3],
        write_dir=str(tmp_path),
    )
    reference, _ = wfdb.rdsamp(str(tmp_path / "rec"))
    np.testing.assert_allclose(_ours(str(tmp_path / "rec")), reference.T, atol=1e-9)


@pytest.mark.parametrize(("fmt", "dtype", "offset"), [("61", ">i2", 0), ("160", "<u2", 32768)])
def test_formats_wfdb_cannot_write(tmp_path, fmt, dtype, offset):
    digital = np.random.default_rng(0).integers(-3000, 3000, size=(500, 2))
    (digital + offset).astype(dtype).tofile(tmp_path / "rec.dat")
    lines = ["rec 2 500 500", f"rec.dat {fmt} 400(7)/mV 16 0 0 0 0 I", f"rec.dat {fmt} 400(7)/mV 16 0 0 0 0 II"]
    (tmp_path / "rec.hea").write_text("\n".join(lines) + "\n")
    reference, _ = wfdb.rdsamp(str(tmp_path / "rec"))
    signal, _ = read_signals(parse_header(str(tmp_path / "rec.hea")))
    np.testing.assert_allclose(signal, reference.T, atol=1e-9)
    np.testing.assert_allclose(signal, (digital.T - 7) / 400, atol=1e-9)


def _copy_record(tmp_path, name="00001_lr"):
    for ext in (".hea", ".dat"):
        shutil.copy(PTBXL / "records100/00000" / (name + ext), tmp_path / (name + ext))
    return tmp_path / name


def test_truncated_signal_file_names_the_file(tmp_path):
    record = _copy_record(tmp_path)
    data = (tmp_path / "00001_lr.dat").read_bytes()
    (tmp_path / "00001_lr.dat").write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordError, match=r"00001_lr\.dat.*truncated"):
        read_signals(parse_header(str(record) + ".hea"))


def test_missing_signal_file(tmp_path):
    record = _copy_record(tmp_path)
    (tmp_path / "00001_lr.dat").unlink()
    with pytest.raises(RecordError, match="does not exist"):
        read_signals(parse_header(str(record) + ".hea"))


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda lines: lines[:5], "has 4 signal lines"),
        (lambda lines: ["00001_lr twelve 100 1000", *lines[1:]], "signal count"),
        (lambda lines: [lines[0], lines[1].replace(" 16 ", " 999 ", 1), *lines[2:]], "format 999"),
        (lambda lines: [lines[0], lines[1].replace("1000.0(0)/mV", "abc/mV"), *lines[2:]], "gain"),
        (lambda lines: [lines[0], lines[1].replace("/mV", "/furlong"), *lines[2:]], "units"),
        (lambda lines: [], "empty"),
    ],
)
def test_malformed_headers(tmp_path, mutate, problem):
    record = _copy_record(tmp_path)
    header = tmp_path / "00001_lr.hea"
    header.write_text("\n".join(mutate(header.read_text().splitlines())) + "\n")
    with pytest.raises(RecordError, match=problem) as caught:
        read_signals(parse_header(str(record) + ".hea"))
    assert caught.value.path.endswith(".hea")


def test_checksum_mismatch_is_flagged(tmp_path):
    record = _copy_record(tmp_path)
    raw = bytearray((tmp_path / "00001_lr.dat").read_bytes())
    raw[100] ^= 0xFF
    (tmp_path / "00001_lr.dat").write_bytes(bytes(raw))
    _, problems = read_signals(parse_header(str(record) + ".hea"))
    assert len(problems) == 1 and problems[0].startswith("checksum:")


def test_invalid_sample_value_becomes_nan(tmp_path):
    digital = np.arange(600, dtype=np.int64).reshape(300, 2)
    digital[10, 1] = -32768
    wfdb.wrsamp(
        "nan",
        fs=100,
        units=["mV", "mV"],
        sig_name=["I", "II"],
        d_signal=digital,
        fmt=["16", "16"],
        adc_gain=[100.0, 100.0],
        baseline=[0, 0],
        write_dir=str(tmp_path),
    )
    signal, _ = read_signals(parse_header(str(tmp_path / "nan.hea")))
    assert np.isnan(signal[1, 10]) and np.isfinite(np.delete(signal[1], 10)).all()
