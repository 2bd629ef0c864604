"""Paired comparison of two rows of benchmark results: is method A above method B on the same records?

Every benchmark cell keeps its validation probabilities (``cells/NAME.npz``), so two methods scored on
the same records can be compared record by record. Two separate 95 % CIs that overlap say little
about a difference: most of each interval is which records happened to be in the validation fold,
and that is shared by both methods. ``paired_bootstrap_difference`` resamples the records once for
both, so the interval of A − B is the test of "A beats B" (and of "A beats B by at least 0.05").

Rows may come from two benchmark folders (a rerun, an ablation file), as long as both scored the same
records of the same store; anything else is refused with the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from coreecg.evaluation.benchmark import ROW_SEPARATOR, Cell, read_cell
from coreecg.files import read_json
from coreecg.metrics import PairedDifference, paired_bootstrap_difference
from coreecg.store import Store


@dataclass(frozen=True)
class BenchmarkRow:
    """One row of a benchmark folder: its cells by column (task and fraction), one per seed."""

    run: str
    row: str
    store: str
    cells: dict[str, list[dict]]  # column → the cells' summaries (``cell``: method, task, fraction, seed, …)


@dataclass(frozen=True)
class ColumnComparison:
    column: str
    seeds_a: int
    seeds_b: int
    records: int
    metrics: dict[str, PairedDifference]


def read_results(run: str) -> dict:
    """The folder's results.json or, while its benchmark is still running (or was stopped), its finished cells.

    A long benchmark (the ablations at the protocol's budget run over several sessions) writes
    results.json only at its end, but every finished cell is complete on disk: comparing them early
    is how a user reads a partial run without waiting for, or faking, its end.
    """
    path = os.path.join(run, "results.json")
    if os.path.isfile(path):
        results = read_json(path)
        if not (isinstance(results, dict) and isinstance(results.get("cells"), dict) and "store" in results):
            raise ValueError(f"{path}: not a benchmark's results (no store or cells)")
        return results
    config_path, cells_dir = os.path.join(run, "config.json"), os.path.join(run, "cells")
    names = []
    if os.path.isdir(cells_dir):
        names = sorted(name.removesuffix(".json") for name in os.listdir(cells_dir) if name.endswith(".json"))
    if not os.path.isfile(config_path) or not names:
        raise ValueError(
            f"{run}: no results.json and no finished cell (not a benchmark folder, or no cell of it has finished)"
        )
    settings = read_json(config_path)
    if not isinstance(settings, dict) or not isinstance(settings.get("store"), str):
        raise ValueError(f"{config_path}: not a benchmark's settings (no store)")
    return {"store": settings["store"], "cells": {name: read_cell(run, name)[0] for name in names}}


def find_row(run: str, wanted: str) -> BenchmarkRow:
    """The row named ``wanted``: a row as results.md names it, or a method name with one row on all leads."""
    results = read_results(run)
    by_row: dict[str, dict[str, list[dict]]] = {}
    for name, summary in results["cells"].items():
        try:
            cell = Cell(**summary["cell"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"{run}: cell {name!r} of its results is malformed ({error})") from None
        by_row.setdefault(cell.row, {}).setdefault(cell.column, []).append({**summary, "name": name})
    rows = list(by_row)
    matches = [row for row in rows if row == wanted]
    if not matches:
        matches = [row for row in rows if row.startswith(wanted + ROW_SEPARATOR) and row.count(ROW_SEPARATOR) == 1]
    if len(matches) != 1:
        problem = "matches several rows" if matches else "is not a row"
        raise ValueError(f"{run}: {wanted!r} {problem}; its rows: " + "; ".join(repr(r) for r in (matches or rows)))
    return BenchmarkRow(run, matches[0], results["store"], by_row[matches[0]])


def _load_cells(row: BenchmarkRow, column: str) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The validation rows (shared by every seed) and each seed's probabilities and thresholds."""
    rows, probabilities, thresholds = None, [], []
    for summary in row.cells[column]:
        try:
            _, arrays = read_cell(row.run, summary["name"])
        except ValueError as error:
            raise ValueError(f"{error}; re-run the benchmark to rebuild it") from None
        if rows is not None and not np.array_equal(rows, arrays["val_rows"]):
            path = os.path.join(row.run, "cells", summary["name"] + ".npz")
            raise ValueError(f"{path}: scored other validation records than the row's other seeds")
        rows = arrays["val_rows"]
        probabilities.append(arrays["val"])
        thresholds.append(arrays["thresholds"])
    return rows, probabilities, thresholds


def _record_ids(store: Store, rows: np.ndarray) -> np.ndarray:
    return store.records["record_id"].to_numpy()[rows]


def compare_rows(
    a: BenchmarkRow,
    b: BenchmarkRow,
    columns: list[str] | None = None,
    replicates: int = 1000,
    seed: int = 0,
    store_path: str | None = None,
) -> list[ColumnComparison]:
    """A − B in every column both rows have (or those named), each side averaged over its seeds.

    Labels come from ``store_path`` (default: A's store). Both rows must have scored the same
    validation records, checked by record id when the two folders name different stores.
    """
    shared = [column for column in a.cells if column in b.cells]
    if columns:
        unknown = [column for column in columns if column not in shared]
        if unknown:
            raise ValueError(f"columns {unknown} are not in both rows (shared: {shared})")
        shared = [column for column in shared if column in columns]
    if not shared:
        raise ValueError(f"{a.run} {a.row!r} and {b.run} {b.row!r} have no column in common")
    store = Store(store_path or a.store)
    other = store if (store_path or os.path.realpath(a.store) == os.path.realpath(b.store)) else Store(b.store)
    out = []
    for column in shared:
        rows_a, probabilities_a, thresholds_a = _load_cells(a, column)
        rows_b, probabilities_b, thresholds_b = _load_cells(b, column)
        if not np.array_equal(_record_ids(store, rows_a), _record_ids(other, rows_b)):
            raise ValueError(
                f"{column}: {a.run} and {b.run} scored different validation records; "
                "a paired comparison needs the same ones"
            )
        task = a.cells[column][0]["cell"]["task"]
        labels = store.label_set(task).matrix[rows_a]
        metrics = paired_bootstrap_difference(
            labels, (probabilities_a, thresholds_a), (probabilities_b, thresholds_b), replicates, seed
        )
        out.append(ColumnComparison(column, len(probabilities_a), len(probabilities_b), len(rows_a), metrics))
    return out


def comparison_table(a: BenchmarkRow, b: BenchmarkRow, comparisons: list[ColumnComparison], metric: str) -> str:
    """Markdown: each column's A, B, A − B, the paired 95 % CI of A − B and how often A ≤ B in resamples."""
    lines = [
        f"A: {a.row} ({a.run}); B: {b.row} ({b.run}). Validation {metric}, each side the mean over its seeds; "
        "paired bootstrap over the same records.",
        "",
        "| column | seeds A / B | records | A | B | A − B | 95 % CI of A − B | resamples with A ≤ B |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        d = c.metrics[metric]
        low, high = d.ci95
        lines.append(
            f"| {c.column} | {c.seeds_a} / {c.seeds_b} | {c.records} | {d.a:.4f} | {d.b:.4f} | "
            f"{d.difference:+.4f} | {low:+.4f} to {high:+.4f} | {d.share_not_above:.1%} |"
        )
    return "\n".join(lines) + "\n"
