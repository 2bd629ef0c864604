"""Shared fixtures: real ECG records and stores prepared from them once per run.

The records are the larger sample in ``../shared/data`` (or ``$COREECG_SHARED_DATA``) where it is
present, and the small committed set in ``tests/fixtures/data`` otherwise, so the suite runs on a
plain clone. Tests that need the larger sample are marked ``needs_sample`` and skipped without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coreecg.prepare import prepare_store
from coreecg.preprocess import PrepConfig
from coreecg.readers import SOURCE_KINDS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"
SAMPLE = Path(os.environ.get("COREECG_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
SAMPLE_PRESENT = (SAMPLE / "ptbxl" / "ptbxl_database.csv").is_file()
DATA = SAMPLE if SAMPLE_PRESENT else FIXTURES
needs_sample = pytest.mark.skipif(
    not SAMPLE_PRESENT, reason=f"needs the 422-record sample data ({SAMPLE} or $COREECG_SHARED_DATA), absent here"
)
PTBXL = DATA / "ptbxl"
SPLITS = DATA / "ptbxl-splits"
CINC = DATA / "cinc2021"


def quiet(message: str) -> None:
    """A ``log`` for prepare_store that keeps test output clean."""


@pytest.fixture(scope="session")
def ptbxl_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stores") / "ptbxl"
    prepare_store(SOURCE_KINDS["ptbxl"](str(PTBXL)), str(out), PrepConfig(), workers=2, shard_size=150, log=quiet)
    return out


@pytest.fixture(scope="session")
def cinc_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stores") / "cinc"
    prepare_store(SOURCE_KINDS["cinc"](str(CINC)), str(out), PrepConfig(), log=quiet)
    return out
