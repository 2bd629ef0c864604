"""Markdown tables of a benchmark's results, laid out like a paper's results table.

``results.md``: rows are methods (with protocol and lead set), columns are task × label fraction;
each cell is the seed mean ± std of the macro metric, and a second table gives the bootstrap 95 %
CI of that mean. ``per_class.md``: per task and column, each class's AUROC (seed mean) per row.
"""

from __future__ import annotations

import os

from coreecg.files import write_text

METRIC_NAMES = {"auroc": "macro AUROC", "auprc": "macro AUPRC", "f1": "macro F1 (validation-tuned thresholds)"}


def _columns(aggregate: dict) -> list[str]:
    seen: list[str] = []
    for row in aggregate.values():
        seen.extend(column for column in row if column not in seen)
    return seen


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def metric_table(aggregate: dict, part: str, metric: str, interval: bool = False) -> list[str]:
    """One metric over every row and column: ``mean ± std (n)`` or, with ``interval``, the 95 % CI."""
    columns = _columns(aggregate)
    rows = []
    for name, row in aggregate.items():
        cells = []
        for column in columns:
            stats = row.get(column, {}).get(part, {}).get(metric)
            if stats is None:
                cells.append("")
            elif interval:
                low, high = stats.get("ci95", [float("nan")] * 2)
                cells.append(f"{low:.3f}–{high:.3f}")
            else:
                cells.append(f"{stats['mean']:.3f} ± {stats['std']:.3f}" + (f" ({len(stats['values'])})"))
        rows.append([name, *cells])
    return _table(["method", *columns], rows)


def per_class_tables(aggregate: dict, part: str) -> list[str]:
    """For each column (task × fraction), rows × classes of AUROC."""
    lines: list[str] = []
    for column in _columns(aggregate):
        present = {name: row[column][part] for name, row in aggregate.items() if column in row and part in row[column]}
        if not present:
            continue
        classes = list(next(iter(present.values()))["per_class_auroc"])
        lines += ["", f"### {column} ({part})", ""]
        rows = [
            [name, *(f"{stats['per_class_auroc'].get(c, float('nan')):.3f}" for c in classes)]
            for name, stats in present.items()
        ]
        lines += _table(["method", *classes], rows)
        excluded = next(iter(aggregate.values())).get(column, {}).get("classes_excluded") or []
        if excluded:
            lines.append(f"\nExcluded (no positives or no negatives in {part}): {', '.join(excluded)}")
    return lines


def write_tables(results: dict, out: str, has_test: bool) -> None:
    aggregate = results["aggregate"]
    parts = ["val"] + (["test"] if has_test else [])
    lines = [
        "# Benchmark results",
        "",
        f"Store: `{results['store']}`. Each cell: mean ± std over seeds (number of "
        "seeds); model selection (C, checkpoint, thresholds) on validation only.",
        "",
    ]
    for part in parts:
        title = "validation" if part == "val" else "test (scored once per model, after selection)"
        for metric, label in METRIC_NAMES.items():
            lines += [f"## {label}, {title}", "", *metric_table(aggregate, part, metric), ""]
        lines += [
            f"## macro AUROC, {title}: bootstrap 95 % CI of the seed mean",
            "",
            *metric_table(aggregate, part, "auroc", interval=True),
            "",
        ]
    write_text(os.path.join(out, "results.md"), "\n".join(lines))
    per_class = ["# Per-class AUROC (seed mean)"]
    for part in parts:
        per_class += per_class_tables(aggregate, part)
    write_text(os.path.join(out, "per_class.md"), "\n".join(per_class) + "\n")
