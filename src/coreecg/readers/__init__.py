"""Readers: one module per kind of ECG collection, all producing ``RawRecord`` through ``Source``."""

from __future__ import annotations

from coreecg.readers.base import Source
from coreecg.readers.cinc import CincSource
from coreecg.readers.code15 import Code15Source
from coreecg.readers.label_tables import LabelTableSource
from coreecg.readers.numpy_arrays import NumpySource
from coreecg.readers.ptbxl import PtbxlSource
from coreecg.readers.synthetic import SyntheticSource
from coreecg.readers.wfdb_folder import WfdbFolderSource

SOURCE_KINDS: dict[str, type[Source]] = {
    cls.kind: cls
    for cls in (PtbxlSource, LabelTableSource, CincSource, WfdbFolderSource, NumpySource, Code15Source, SyntheticSource)
}

__all__ = ["SOURCE_KINDS", "Source"]
