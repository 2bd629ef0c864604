"""PTB-XL label tables in the MERL benchmark format, as label and split source for a records folder.

Each table (``<task>/ptbxl_<task>_<split>.csv``) has ``ecg_id, patient_id, strat_fold,
filename_lr, filename_hr``, one column listing the labels, then one 0/1 column per class. A record
may appear in several tasks' tables; it is stored once with one label set per task. Being absent
from a task's tables means "not labelled for that task", which the store keeps distinct from
"labelled negative".
"""

from __future__ import annotations

import os
import re

from coreecg.readers.base import Source, read_wfdb_record, require_dir
from coreecg.readers.ptbxl import patient_id_text, read_csv_rows, split_of_fold
from coreecg.record import RawRecord, RecordError, SourceError

_META_COLUMNS = {"ecg_id", "patient_id", "strat_fold", "filename_lr", "filename_hr"}
_TABLE_NAME = re.compile(r"^(?:ptbxl_)?(?P<task>.+?)_(?P<split>train|val|test)\.csv$")


class LabelTableSource(Source):
    """Records under ``root`` (``records100``/``records500``) labelled by MERL-format tables."""

    kind = "ptbxl-tables"

    def __init__(self, root: str, tables: str | None = None, variant: str = "lr"):
        if variant not in ("lr", "hr"):
            raise SourceError(f"variant must be 'lr' or 'hr', got {variant!r}")
        self.root = require_dir(root, "records folder")
        self.variant = variant
        tables = tables or os.path.join(root, "ptbxl_splits")
        self.tables_dir = require_dir(tables, "label tables folder (give it with --tables)")
        self.records: dict[str, dict] = {}
        self.classes: dict[str, list[str]] = {}
        table_paths = sorted(
            os.path.join(d, f) for d, _, files in os.walk(tables) for f in files if _TABLE_NAME.match(f)
        )
        if not table_paths:
            raise SourceError(f"{tables}: no label tables named <task>_<train|val|test>.csv found")
        for path in table_paths:
            self._add_table(path)
        self._keys = sorted(self.records, key=lambda k: (len(k), k))

    def _add_table(self, path: str) -> None:
        match = _TABLE_NAME.match(os.path.basename(path))
        assert match is not None
        task, split = match.group("task"), match.group("split")
        rows = read_csv_rows(path)
        if not rows:
            return
        file_column = f"filename_{self.variant}"
        if not {"ecg_id", file_column} <= set(rows[0]):
            raise SourceError(f"{path}: a label table needs the columns ecg_id and {file_column}")
        columns = list(rows[0])
        classes = [c for c in columns if c not in _META_COLUMNS and all(r[c] in ("0", "1") for r in rows)]
        if not classes:
            raise SourceError(f"{path}: no 0/1 class columns found")
        known = self.classes.setdefault(task, classes)
        if set(known) != set(classes):
            raise SourceError(f"{path}: classes {classes} differ from the other {task} tables' {known}")
        for line, row in enumerate(rows, start=2):
            key = row["ecg_id"].strip()
            entry = self.records.setdefault(
                key,
                {"file": row[file_column].strip(), "where": f"{path} line {line}", "labels": {}},
            )
            entry.setdefault("patient_id", patient_id_text(row.get("patient_id")))
            if row.get("strat_fold", "").strip():
                entry["fold"] = int(float(row["strat_fold"]))
            entry["split"] = split
            entry["labels"][task] = [c for c in classes if row[c] == "1"]

    def record_keys(self) -> list[str]:
        return self._keys

    def read(self, key: str) -> RawRecord:
        entry = self.records[key]
        header_path = os.path.join(self.root, entry["file"] + ".hea")
        if not os.path.isfile(header_path):
            raise RecordError(entry["where"], f"label row names record {entry['file']}, which does not exist")
        record, _ = read_wfdb_record(header_path, key, source="PTB-XL")
        record.patient_id = entry["patient_id"]
        record.fold = entry.get("fold", -1)
        record.split = entry["split"] if record.fold < 0 else split_of_fold(record.fold)
        record.labels = {task: list(labels) for task, labels in entry["labels"].items()}
        return record

    def declared_classes(self) -> dict[str, list[str]]:
        return {task: list(classes) for task, classes in self.classes.items()}

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "root": os.path.abspath(self.root),
            "tables": os.path.abspath(self.tables_dir),
            "variant": self.variant,
        }
