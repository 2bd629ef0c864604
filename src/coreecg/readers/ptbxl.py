"""PTB-XL in its official layout, with the label sets of the PTB-XL benchmark.

Label aggregation follows Strodthoff et al. 2020 ("Deep learning for ECG analysis: benchmarks and
insights from PTB-XL"): a statement counts whatever its likelihood; ``diagnostic``, ``form`` and
``rhythm`` keep the statements flagged so in ``scp_statements.csv``; ``subdiagnostic`` and
``superdiagnostic`` map diagnostic statements to their subclass and class; ``all`` keeps all.
Folds follow the recommended split: 1-8 train, 9 validation, 10 test.
"""

from __future__ import annotations

import ast
import csv
import math
import os

from coreecg.readers.base import Source, read_wfdb_record, require_dir, require_file
from coreecg.record import RawRecord, RecordError, SourceError

PTBXL_TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")


def split_of_fold(fold: int) -> str:
    """The PTB-XL recommended split: folds 1-8 train, 9 validation, 10 test."""
    return {9: "val", 10: "test"}.get(fold, "train" if 1 <= fold <= 8 else "")


def read_csv_rows(path: str) -> list[dict[str, str]]:
    require_file(path, os.path.basename(path))
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SourceError(f"{path}: cannot read table: {error}") from None


class ScpStatements:
    """``scp_statements.csv``: which statements are diagnostic/form/rhythm, and their (sub)classes."""

    def __init__(self, path: str):
        rows = read_csv_rows(path)
        if not rows or "" not in rows[0] or "diagnostic" not in rows[0]:
            raise SourceError(f"{path}: not a PTB-XL scp_statements.csv (needs the statement index and 'diagnostic')")
        self.diagnostic: dict[str, tuple[str, str]] = {}
        self.form: set[str] = set()
        self.rhythm: set[str] = set()
        self.description: dict[str, str] = {}
        for row in rows:
            code = row[""].strip()
            self.description[code] = row.get("description", "")
            if _flag(row.get("diagnostic")):
                self.diagnostic[code] = (row.get("diagnostic_subclass", ""), row.get("diagnostic_class", ""))
            if _flag(row.get("form")):
                self.form.add(code)
            if _flag(row.get("rhythm")):
                self.rhythm.add(code)

    def aggregate(self, codes: list[str]) -> dict[str, list[str]]:
        diagnostic = [c for c in codes if c in self.diagnostic]
        return {
            "all": sorted(set(codes)),
            "diagnostic": sorted(set(diagnostic)),
            "subdiagnostic": sorted({self.diagnostic[c][0] for c in diagnostic if self.diagnostic[c][0]}),
            "superdiagnostic": sorted({self.diagnostic[c][1] for c in diagnostic if self.diagnostic[c][1]}),
            "form": sorted({c for c in codes if c in self.form}),
            "rhythm": sorted({c for c in codes if c in self.rhythm}),
        }


def _flag(value: str | None) -> bool:
    try:
        return float(value or "nan") == 1.0
    except ValueError:
        return False


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def patient_id_text(value: str | None) -> str:
    """Patient ids are floats in the PTB-XL tables (``15709.0``); store them as integers' text."""
    number = _float(value)
    return str(int(number)) if math.isfinite(number) else (value or "")


class PtbxlSource(Source):
    """PTB-XL: ``ptbxl_database.csv`` rows are the records; ``variant`` picks records100 or records500."""

    kind = "ptbxl"

    def __init__(self, root: str, variant: str = "lr"):
        if variant not in ("lr", "hr"):
            raise SourceError(f"PTB-XL variant must be 'lr' (records100) or 'hr' (records500), got {variant!r}")
        self.root = require_dir(root, "PTB-XL folder")
        self.variant = variant
        self.database_path = os.path.join(root, "ptbxl_database.csv")
        rows = read_csv_rows(self.database_path)
        needed = {"ecg_id", "scp_codes", "strat_fold", f"filename_{variant}"}
        if rows and not needed <= set(rows[0]):
            raise SourceError(f"{self.database_path}: missing columns {sorted(needed - set(rows[0]))}")
        if not rows:
            raise SourceError(f"{self.database_path}: the table has no records")
        self.statements = ScpStatements(os.path.join(root, "scp_statements.csv"))
        self.rows = {row["ecg_id"].strip(): (line, row) for line, row in enumerate(rows, start=2)}
        self._keys = sorted(self.rows, key=lambda k: (len(k), k))

    def record_keys(self) -> list[str]:
        return self._keys

    def read(self, key: str) -> RawRecord:
        line, row = self.rows[key]
        relative = row[f"filename_{self.variant}"].strip()
        where = f"{self.database_path} line {line} (ecg_id {key})"
        header_path = os.path.join(self.root, relative + ".hea")
        if not os.path.isfile(header_path):
            raise RecordError(where, f"names record {relative}, which does not exist")
        try:
            codes = list(ast.literal_eval(row["scp_codes"]).keys())
        except (ValueError, SyntaxError, AttributeError):
            raise RecordError(where, f"scp_codes {row['scp_codes']!r} is not a dictionary") from None
        try:
            fold = int(float(row["strat_fold"]))
        except ValueError:
            raise RecordError(where, f"strat_fold {row['strat_fold']!r} is not a fold number") from None
        record, _ = read_wfdb_record(header_path, key, source="PTB-XL")
        record.patient_id = patient_id_text(row.get("patient_id"))
        record.age = _float(row.get("age"))
        record.sex = {"0": "M", "1": "F"}.get(row.get("sex", "").strip(), "")
        record.fold = fold
        record.split = split_of_fold(fold)
        record.labels = self.statements.aggregate(codes)
        return record

    def class_names(self) -> dict[str, dict[str, str]]:
        names = self.statements.description
        return {task: names for task in ("all", "diagnostic", "form", "rhythm")}

    def describe(self) -> dict:
        return {"kind": self.kind, "root": os.path.abspath(self.root), "variant": self.variant}
