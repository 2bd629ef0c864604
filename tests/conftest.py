"""Shared fixtures: the real sample data in ../shared/data and stores prepared from it once per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coreecg.prepare import prepare_store
from coreecg.preprocess import PrepConfig
from coreecg.readers import SOURCE_KINDS

DATA = Path(os.environ.get("COREECG_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
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
