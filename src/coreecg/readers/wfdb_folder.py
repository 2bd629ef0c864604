"""Any folder of WFDB records (any lead count, any rate), walked recursively."""

from __future__ import annotations

import os

from coreecg.readers.base import Source, find_headers, read_wfdb_record, require_dir
from coreecg.record import RawRecord, SourceError


class WfdbFolderSource(Source):
    """Every ``.hea`` below a folder is a record; its id is the path relative to the folder."""

    kind = "wfdb"

    def __init__(self, root: str):
        self.root = require_dir(root, "WFDB record folder")
        self._keys = find_headers(self.root)
        if not self._keys:
            raise SourceError(f"{root}: no WFDB records (.hea files) found in this folder or below it")

    def record_keys(self) -> list[str]:
        return self._keys

    def read(self, key: str) -> RawRecord:
        record, _ = read_wfdb_record(os.path.join(self.root, key + ".hea"), key, source=self.kind)
        return record

    def describe(self) -> dict:
        return {"kind": self.kind, "root": os.path.abspath(self.root)}
