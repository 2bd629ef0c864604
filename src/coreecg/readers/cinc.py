"""PhysioNet/CinC Challenge 2020/2021 collections: WFDB headers with ``.mat`` signals and SNOMED labels.

Label sets written to the store:
- ``snomed``: every ``Dx:`` code of the record.
- ``scored``: only the codes the 2021 challenge scored, with the codes it scores as one diagnosis
  (read from the notes column of ``dx_mapping_scored.csv``) merged into the first code named.
Class names come from the challenge's mapping tables (``dx_mapping_scored.csv`` and
``dx_mapping_unscored.csv``), looked up in the folder itself unless given.

Headers as the 2020 challenge first published them name diagnoses by abbreviation (CPSC2018:
``#Dx: AF,RBBB``); those are mapped to SNOMED CT codes, CPSC2018's nine classes as the challenge
converted them, others through the mapping tables' Abbreviation column. A record with an empty or
missing ``#Dx:`` is stored unlabelled (not "negative for every class"). Record ids are the file
names, or the path below the folder where two sub-folders hold the same name.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter

from coreecg.readers.base import Source, find_headers, read_wfdb_record, require_dir, require_file
from coreecg.record import RawRecord, RecordError, SourceError

# First letters of record names -> the challenge database they come from.
_DATABASE_BY_PREFIX = (
    ("HR", "PTB-XL"),
    ("JS", "Chapman-Shaoxing/Ningbo"),
    ("A", "CPSC2018"),
    ("Q", "CPSC-Extra"),
    ("I", "StPetersburg-INCART"),
    ("S", "PTB"),
    ("E", "Georgia"),
)
# The 2021 challenge numbers Chapman-Shaoxing JS00001-JS10646 and Ningbo from JS10647 on.
_FIRST_NINGBO_NUMBER = 10647
_SAME_DIAGNOSIS = re.compile(r"score (\d+) and (\d+) as the same diagnosis")
# CPSC2018's own class names (the 2020 challenge's first release kept them in '#Dx:') and the SNOMED CT
# codes the challenge gave them: the records counted in the CPSC column of its mapping tables.
CPSC2018_CODES = {
    "normal": "426783006",  # sinus rhythm
    "af": "164889003",
    "i-avb": "270492004",
    "lbbb": "164909002",
    "rbbb": "59118001",
    "pac": "284470004",
    "pvc": "164884008",  # ventricular ectopics
    "std": "429622005",
    "ste": "164931005",
}


def database_of(record_name: str) -> str:
    for prefix, database in _DATABASE_BY_PREFIX:
        if record_name.startswith(prefix):
            if prefix == "JS" and record_name[2:].isdigit():
                return "Chapman-Shaoxing" if int(record_name[2:]) < _FIRST_NINGBO_NUMBER else "Ningbo"
            return database
    return "unknown"


def _read_mapping(path: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise SourceError(f"{path}: cannot read mapping table: {error.strerror}") from None
    if rows and not {"SNOMEDCTCode", "Abbreviation"} <= set(rows[0]):
        raise SourceError(f"{path}: mapping table lacks the SNOMEDCTCode and Abbreviation columns")
    return rows


class CincSource(Source):
    kind = "cinc"

    def __init__(self, root: str, dx_mapping: str | None = None):
        self.root = require_dir(root, "PhysioNet/CinC folder")
        self._keys = find_headers(self.root)
        if not self._keys:
            raise SourceError(f"{root}: no records (.hea files) found in this folder or below it")
        names = Counter(os.path.basename(key) for key in self._keys)
        self._shared_names = {name for name, count in names.items() if count > 1}
        self.codes_by_abbreviation: dict[str, str] = {}
        mapping_dir = dx_mapping or self.root
        scored_path = os.path.join(mapping_dir, "dx_mapping_scored.csv")
        unscored_path = os.path.join(mapping_dir, "dx_mapping_unscored.csv")
        self.names: dict[str, str] = {}
        self.scored: set[str] = set()
        self.same_as: dict[str, str] = {}
        self.has_mapping = os.path.isfile(scored_path)
        if dx_mapping is not None:
            require_file(scored_path, "dx_mapping_scored.csv")
        if self.has_mapping:
            for row in _read_mapping(scored_path):
                code = row["SNOMEDCTCode"].strip()
                self.scored.add(code)
                self.names[code] = row["Abbreviation"].strip()
                self.codes_by_abbreviation.setdefault(row["Abbreviation"].strip().casefold(), code)
                match = _SAME_DIAGNOSIS.search(row.get("Notes") or "")
                if match:
                    self.same_as[match.group(2)] = match.group(1)
            if os.path.isfile(unscored_path):
                for row in _read_mapping(unscored_path):
                    self.names.setdefault(row["SNOMEDCTCode"].strip(), row["Abbreviation"].strip())
                    self.codes_by_abbreviation.setdefault(
                        row["Abbreviation"].strip().casefold(), row["SNOMEDCTCode"].strip()
                    )

    def record_keys(self) -> list[str]:
        return self._keys

    def read(self, key: str) -> RawRecord:
        header_path = os.path.join(self.root, key + ".hea")
        name = os.path.basename(key)
        record_id = key.replace(os.sep, "/") if name in self._shared_names else name
        record, comments = read_wfdb_record(header_path, record_id, source=database_of(name))
        fields = {}
        for comment in comments:
            label, _, value = comment.partition(":")
            fields[label.strip().casefold()] = value.strip()
        record.age = _parse_age(fields.get("age", ""))
        record.sex = {"male": "M", "m": "M", "female": "F", "f": "F"}.get(fields.get("sex", "").casefold(), "")
        codes = self._codes(fields.get("dx", ""), record.source, header_path)
        if not codes:
            return record  # no diagnosis given: unlabelled, not negative for every class
        record.labels["snomed"] = sorted(set(codes))
        if self.has_mapping:
            record.labels["scored"] = sorted({self.same_as.get(c, c) for c in codes if c in self.scored})
        return record

    def _codes(self, text: str, database: str, header_path: str) -> list[str]:
        """SNOMED CT codes of a '#Dx:' value: codes as they are, abbreviations mapped."""
        codes, unknown = [], []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            if item.isdigit():
                codes.append(item)
                continue
            key = item.casefold()
            code = CPSC2018_CODES.get(key) if database == "CPSC2018" else None
            code = code or self.codes_by_abbreviation.get(key)
            if code is None:
                unknown.append(item)
            else:
                codes.append(code)
        if unknown:
            where = (
                "the mapping tables" if self.codes_by_abbreviation else "any mapping table (none found; --dx-mapping)"
            )
            raise RecordError(
                header_path, f"'#Dx:' names {unknown}, neither SNOMED CT codes nor abbreviations in {where}"
            )
        return codes

    def class_names(self) -> dict[str, dict[str, str]]:
        return {"snomed": dict(self.names), "scored": {c: n for c, n in self.names.items() if c in self.scored}}

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "root": os.path.abspath(self.root),
            "dx_mapping": self.has_mapping,
            "merged_codes": self.same_as,
        }


def _parse_age(text: str) -> float:
    try:
        age = float(text)
    except ValueError:
        return math.nan
    return age if 0 <= age < 130 else math.nan
