"""``report.html``: one self-contained page (inline SVG and CSS, no scripts, no external files)."""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable

from coreecg.files import write_text
from coreecg.report import collect, figures
from coreecg.version import __version__

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1180px; margin: 2em auto;
       padding: 0 1.2em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.1em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { margin-bottom: 0.3em; } .meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f5f5f7; } .figure svg { max-width: 100%; height: auto; } .note { color: #555; font-size: 0.9em; }
"""


def _metrics_table(aggregate: dict, part: str) -> str:
    columns: list[str] = []
    for row in aggregate.values():
        columns.extend(c for c in row if c not in columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for name, row in aggregate.items():
        cells = []
        for column in columns:
            stats = row.get(column, {}).get(part)
            if not stats:
                cells.append("<td></td>")
                continue
            auroc = stats["auroc"]
            low, high = auroc.get("ci95", [float("nan")] * 2)
            cells.append(
                f"<td><b>{auroc['mean']:.3f}</b> ± {auroc['std']:.3f}<br><span class='note'>"
                f"CI {low:.3f}–{high:.3f} · AUPRC {stats['auprc']['mean']:.3f} · F1 {stats['f1']['mean']:.3f}"
                "</span></td>"
            )
        body.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(body)}</table>"


def _pretraining_section(run: str, label_set: str | None, log: Callable[[str], None]) -> list[str]:
    parts = [f"<h2>Pretraining: {html.escape(os.path.basename(os.path.abspath(run)))}</h2>"]
    config = collect.run_config(run)
    rows = collect.training_rows(run)
    model, objective = config.get("model", {}), config.get("objective", {})
    parts.append(
        f"<p class='meta'>{html.escape(str(config['data']['store']))} · preset {model.get('preset')} · "
        f"objective {objective.get('preset')} · {rows[-1]['step'] if rows else 0} steps</p>"
    )
    if rows:
        parts += ["<h3>Training curves</h3>", f"<div class='figure'>{figures.training_curves(rows)}</div>"]
    log("report: reconstructions")
    examples = collect.reconstruction_examples(run)
    if examples:
        parts.append("<h3>Masked leads reconstructed beside the truth (validation segments)</h3>")
        parts.append(
            f"<p class='note'>Checkpoint at step {examples['step']}. Shaded patches were masked (STDM) "
            "and never seen by the encoder; the red trace is the decoder's prediction of each masked patch's "
            "shape, placed on the true patch's offset and scale (the loss compares normalized shapes). "
            f"Masked-patch MSE of these crops: {examples['masked_mse']:.3f} (1.0 = predicting a flat "
            "line).</p>"
        )
        for i in range(len(examples["target"])):
            svg = figures.reconstruction(
                examples["target"][i], examples["recon"][i], examples["visible"][i], examples["fs"], examples["patch"]
            )
            parts.append(f"<div class='figure'>{svg}</div>")
    log("report: embedding map")
    points = collect.embedding_points(run, label_set)
    if points:
        title = (
            f"t-SNE of the encoder's embeddings: {points['records']} validation records, "
            f"coloured by first {points['label_set']} class"
        )
        svg = figures.embedding_map(points["points"], points["groups"], title)
        parts += ["<h3>Embedding map</h3>", f"<div class='figure'>{svg}</div>"]
    return parts


def _benchmark_section(benchmark: str, log: Callable[[str], None]) -> list[str]:
    results = collect.read_results(benchmark)
    if not isinstance(results.get("aggregate"), dict) or not isinstance(results.get("config"), dict):
        raise ValueError(f"{os.path.join(benchmark, 'results.json')}: not a finished benchmark's results")
    parts = [
        f"<h2>Evaluation: {html.escape(os.path.basename(os.path.abspath(benchmark)))}</h2>",
        f"<p class='meta'>Store {html.escape(results['store'])}. Macro AUROC, mean ± std over seeds; "
        "bootstrap 95 % CI of the seed mean; selection (C, checkpoint, thresholds) on validation only.</p>",
        "<h3>Validation</h3>",
        _metrics_table(results["aggregate"], "val"),
    ]
    if results["config"].get("test") is not None:
        parts += ["<h3>Test (scored once per model)</h3>", _metrics_table(results["aggregate"], "test")]
    log("report: ROC curves")
    for entry in collect.benchmark_roc_data(benchmark):
        parts.append(
            f"<h3>ROC curves: {html.escape(entry['task'])} at {entry['fraction']:.0%} of the labels "
            "(validation, seed 0; legend: AUROC)</h3>"
        )
        svg = figures.roc_curves(entry["labels"], entry["scores"], entry["classes"])
        parts.append(f"<div class='figure'>{svg}</div>")
    return parts


def write_report(
    folder: str,
    out: str | None = None,
    title: str = "coreecg report",
    label_set: str | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """Render every pretraining run and benchmark found in ``folder`` into one HTML file; returns its path."""
    runs = collect.find_runs(folder)
    out = out or os.path.join(folder, "report.html")
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{html.escape(os.path.abspath(folder))} · coreecg {__version__} · "
        f"{time.strftime('%Y-%m-%d %H:%M')}</p>",
    ]
    for benchmark in runs.benchmarks:
        parts += _benchmark_section(benchmark, log)
    for run in runs.pretraining:
        parts += _pretraining_section(run, label_set, log)
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    write_text(out, page)
    return out
