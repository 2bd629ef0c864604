"""The transfer commands: ``probe``, ``finetune``, ``predict``, ``embed`` and ``benchmark``.

``probe`` and ``finetune`` are one-method benchmarks: they build a ``BenchmarkConfig`` in memory
and run it, so they write the same resumable cells, ``results.json`` and Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from coreecg.config import apply_overrides, build, to_dict

# coreecg.model.EMBEDDING_FEATURES, spelled out so that the command line starts without importing torch
# (a test keeps the two equal).
FEATURES = ("g", "g+time", "g+time+change")
PROBE_FEATURES_DEFAULT = "g+time+change"  # coreecg.evaluation.benchmark.ProbeSettings.features


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _add_encoder_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--encoder",
        help="a saved encoder: its folder, a pretraining run folder, or the name of a "
        "shipped one (coreecg.available_encoders())",
    )
    source.add_argument("--random-init", metavar="PRESET", help="an untrained encoder of this size (cpu, tiny, ...)")
    parser.add_argument("--crop-seconds", type=float, default=5.0, help="crop length of a --random-init encoder")
    parser.add_argument(
        "--scale-mv",
        type=float,
        help="fixed amplitude (mV) of a --random-init encoder's normalization (default: each record over its own std)",
    )
    parser.add_argument(
        "--amplitude-kept",
        type=float,
        help="with --scale-mv: share of each record's amplitude kept, on a log scale, in (0, 1] (default 1)",
    )
    parser.add_argument(
        "--amplitude-token",
        action="store_true",
        help="a --random-init encoder with the record-"
        "amplitude token (baseline for encoders trained with model.amplitude_token)",
    )


def _refuse_random_init_options(args: argparse.Namespace) -> None:
    """A saved encoder carries its own normalization and token: say so rather than ignore the options."""
    random_only = (args.scale_mv, args.amplitude_kept, args.amplitude_token or None)
    if args.encoder and any(value is not None for value in random_only):
        raise ValueError(
            "--scale-mv, --amplitude-kept and --amplitude-token are for --random-init only "
            f"(the encoder in {args.encoder} carries its own)"
        )


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="the labelled store")
    parser.add_argument("--task", required=True, help="label set of the store (see coreecg inspect)")
    parser.add_argument("--train", default="train", help="train part: a split name or folds such as 1-8")
    parser.add_argument("--val", default="val", help="validation part (all selection happens here)")
    parser.add_argument("--test", help="test part, scored once per model after selection (default: none)")
    parser.add_argument(
        "--fraction",
        type=float,
        nargs="+",
        default=[1.0],
        help="label fraction(s) of the train part, drawn by iterative stratification",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds (label-fraction draws and, for fine-tuning, initialization)",
    )
    parser.add_argument("--leads", default="all", help="lead subset, e.g. I or I,II or limb (default: all 12)")
    parser.add_argument("--out", required=True, help="output folder (re-running resumes it)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for 95 %% CIs")


def _add_input(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="a prepared store")
    where.add_argument("--wfdb", help="a folder of WFDB records (prepared on the fly with the model's settings)")


def _add_probe(commands) -> None:
    parser = commands.add_parser(
        "probe",
        help="linear probe of a frozen encoder (C chosen on validation)",
        description="Frozen encoder, window-averaged embeddings, standardized, one-vs-rest logistic "
        "regression; C and F1 thresholds chosen on validation; test (if given) scored once.",
    )
    _add_encoder_source(parser)
    _add_selection(parser)
    parser.add_argument("--cs", type=float, nargs="+", help="C grid (default 1e-4 … 1000 in half decades)")
    parser.add_argument(
        "--features",
        choices=FEATURES,
        default=PROBE_FEATURES_DEFAULT,
        help="probe features: g; g+time (g, then its std and max over time); g+time+change (those, "
        "then their mean absolute change between adjacent time positions; the default)",
    )


def _add_finetune(commands) -> None:
    parser = commands.add_parser(
        "finetune",
        help="fine-tune an encoder with a linear head (early stopping on validation)",
        description="Encoder + linear head with layer-wise lr decay and drop-path; the best state by "
        "validation macro AUROC is kept. Settings as key=value (epochs=10 lr=5e-4 layer_decay=0.65 "
        "drop_path=0.1 batch_size=64 patience=5 device=cuda; see docs/evaluation.md).",
    )
    _add_encoder_source(parser)
    _add_selection(parser)
    parser.add_argument("settings", nargs="*", metavar="key=value", help="fine-tuning settings")


def _one_method_config(args: argparse.Namespace, protocol: str):
    from coreecg.evaluation.benchmark import BenchmarkConfig, MethodSpec
    from coreecg.evaluation.finetune import FinetuneConfig

    _refuse_random_init_options(args)
    method = MethodSpec(
        encoder=args.encoder,
        random_init=args.random_init,
        crop_seconds=args.crop_seconds,
        scale_mv=args.scale_mv,
        amplitude_kept=args.amplitude_kept,
        amplitude_token=args.amplitude_token,
        protocols=[protocol],
    )
    config = BenchmarkConfig(
        store=args.store,
        tasks=[args.task],
        fractions=args.fraction,
        seeds=args.seeds,
        lead_sets={args.leads: args.leads},
        train=args.train,
        val=args.val,
        test=args.test,
        bootstrap=args.bootstrap,
        methods={"random-init" if args.random_init else "encoder": method},
    )
    if protocol == "probe":
        config.probe.features = args.features
        if args.cs:
            config.probe.cs = list(args.cs)
    if protocol == "finetune":
        config.finetune = build(FinetuneConfig, apply_overrides(to_dict(FinetuneConfig()), args.settings), "finetune")
    return config


def _print_results(results: dict) -> None:
    for row, columns in results["aggregate"].items():
        for column, stats in columns.items():
            for part in ("val", "test"):
                if part not in stats:
                    continue
                auroc = stats[part]["auroc"]
                low, high = auroc["ci95"]
                print(
                    f"{row} | {column} | {part}: macro AUROC {auroc['mean']:.4f} ± {auroc['std']:.4f} "
                    f"(95 % CI {low:.4f}–{high:.4f}), macro AUPRC {stats[part]['auprc']['mean']:.4f}, "
                    f"macro F1 {stats[part]['f1']['mean']:.4f}"
                )


def run_probe_or_finetune(args: argparse.Namespace) -> int:
    from coreecg.evaluation.benchmark import run_benchmark

    results = run_benchmark(_one_method_config(args, args.command), args.out, log=_log)
    _print_results(results)
    if args.command == "finetune":
        for name in sorted(results["cells"]):  # this command's cells, not every folder left in models/
            print(f"classifier: {os.path.join(args.out, 'models', name, 'classifier')}")
    print(f"tables: {os.path.join(args.out, 'results.md')}, {os.path.join(args.out, 'per_class.md')}")
    return 0


def _add_predict(commands) -> None:
    parser = commands.add_parser(
        "predict",
        help="per-record probabilities and labels of a fine-tuned classifier, as CSV",
        description="Probabilities of every class and 0/1 labels at the thresholds tuned on validation, "
        "one row per record, for a store (optionally one part of it) or a folder of WFDB records.",
    )
    parser.add_argument("classifier", help="a classifier folder (…/classifier) from coreecg finetune")
    _add_input(parser)
    parser.add_argument("--part", help="only this part of the store: a split name or folds (default: all records)")
    parser.add_argument("--out", required=True, help="CSV file to write")


def run_predict(args: argparse.Namespace) -> int:
    from coreecg.evaluation.classifier import load_classifier, predict_folder, predict_store
    from coreecg.evaluation.selection import parse_part, part_mask
    from coreecg.files import write_text
    from coreecg.store import Store

    saved = load_classifier(args.classifier)
    if args.store:
        store = Store(args.store)
        rows = None if args.part is None else np.flatnonzero(part_mask(store, parse_part(args.part)))
        table = predict_store(saved, store, rows)
    else:
        if args.part:
            raise ValueError("--part applies to --store only")
        table, _ = predict_folder(saved, args.wfdb, _log)  # skipped records are logged with their reasons
    write_text(args.out, table.to_csv(index=False))
    print(f"{len(table)} records → {args.out} ({len(saved.classes)} classes: {', '.join(saved.classes)})")
    return 0


def _add_embed(commands) -> None:
    parser = commands.add_parser(
        "embed",
        help="embeddings of a store or a WFDB folder to .npy + records.csv",
        description="One embedding per record (g averaged over evenly spaced windows): OUT/embeddings.npy "
        "(records × D, float32) and OUT/records.csv (row order: record_id, source, fold, split).",
    )
    _add_encoder_source(parser)
    _add_input(parser)
    parser.add_argument("--leads", default="all", help="lead subset (default: all 12)")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: several times faster on GPUs and on CPUs with AMX, g within about 1e-2 (default fp32)",
    )
    parser.add_argument(
        "--features",
        choices=FEATURES,
        default="g",
        help="g (records × D, the default); g+time: g, then the std and the max over time of the "
        "lead-averaged tokens (records × 3·D); g+time+change: those, then their mean absolute "
        "change between adjacent time positions (records × 4·D; what the probe uses)",
    )
    parser.add_argument("--out", required=True, help="output folder")


def run_embed(args: argparse.Namespace) -> int:
    from coreecg.dataset import Amplitude
    from coreecg.evaluation.classifier import prepare_folder
    from coreecg.evaluation.features import random_encoder, record_embeddings
    from coreecg.files import write_atomically, write_text
    from coreecg.pretrained import load_encoder
    from coreecg.store import Store

    _refuse_random_init_options(args)
    with tempfile.TemporaryDirectory(prefix="coreecg-embed-") as work:
        encoder = load_encoder(args.encoder) if args.encoder else None
        if args.store:
            store = Store(args.store)
        else:
            if encoder is None:
                raise ValueError("--wfdb needs --encoder (a random-init encoder has no preprocessing of its own)")
            store = prepare_folder(args.wfdb, encoder.preprocessing, work, _log)
        if encoder is None:
            amplitude = Amplitude.from_options(args.scale_mv, args.amplitude_kept)
            encoder = random_encoder(
                args.random_init,
                store,
                args.crop_seconds,
                seed=0,
                amplitude=amplitude,
                amplitude_token=args.amplitude_token,
            )
        rows = np.arange(store.n_records)
        leads = None if args.leads == "all" else args.leads
        x = record_embeddings(encoder, store, rows, leads, precision=args.precision, features=args.features)
        write_atomically(os.path.join(args.out, "embeddings.npy"), lambda temp: np.save(temp, x))
        records = store.records[["record_id", "source", "fold", "split"]]
        write_text(os.path.join(args.out, "records.csv"), records.to_csv(index=False))
    print(f"{x.shape[0]} records × {x.shape[1]} → {os.path.join(args.out, 'embeddings.npy')} (+ records.csv)")
    return 0


def _add_benchmark(commands) -> None:
    parser = commands.add_parser(
        "benchmark",
        help="methods × tasks × label fractions × lead sets × seeds, resumable, with Markdown tables",
        description="Run the grid of a benchmark config (see configs/benchmark/ and docs/evaluation.md). "
        "Finished cells are kept and reused; pretraining runs named by methods are trained once.",
    )
    parser.add_argument("config", help="benchmark YAML")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. test=null seeds=[0]")
    parser.add_argument("--out", required=True, help="output folder (re-running resumes it)")


def run_benchmark_command(args: argparse.Namespace) -> int:
    from coreecg.evaluation.benchmark import load_benchmark_config, run_benchmark

    results = run_benchmark(load_benchmark_config(args.config, args.overrides), args.out, log=_log)
    _print_results(results)
    print(f"tables: {os.path.join(args.out, 'results.md')}, {os.path.join(args.out, 'per_class.md')}")
    return 0


def _add_compare(commands) -> None:
    parser = commands.add_parser(
        "compare",
        help="is one benchmark row above another? paired bootstrap of the difference on the same records",
        description="For every column (task and label fraction) two rows share: A, B, A − B (each the mean over "
        "its seeds) and the 95 %% CI of A − B from resampling the validation records once for both. Rows are "
        "named as in results.md, or by method name; B may come from another benchmark folder on the same store. "
        "A benchmark still running (or stopped) is compared on its finished cells; the seeds column says how many.",
    )
    parser.add_argument("run", help="benchmark folder of row A (and of B unless --b-run)")
    parser.add_argument("--a", required=True, help="row A: a row of results.md, or a method name")
    parser.add_argument("--b", required=True, help="row B")
    parser.add_argument("--b-run", help="benchmark folder of row B (default: the same folder)")
    parser.add_argument("--columns", nargs="+", help='only these columns, e.g. "super_class 10%%"')
    parser.add_argument("--metric", choices=("auroc", "auprc", "f1"), default="auroc")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of the records")
    parser.add_argument("--store", help="the store the labels come from (default: the benchmark's own)")
    parser.add_argument("--out", help="also write the table to this Markdown file")


def run_compare(args: argparse.Namespace) -> int:
    from coreecg.evaluation.compare import compare_rows, comparison_table, find_row
    from coreecg.files import write_text

    a = find_row(args.run, args.a)
    b = find_row(args.b_run or args.run, args.b)
    comparisons = compare_rows(a, b, args.columns, args.bootstrap, store_path=args.store)
    table = comparison_table(a, b, comparisons, args.metric)
    print(table, end="")
    if args.out:
        write_text(args.out, table)
    return 0


def _add_report(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="a self-contained report.html of a pretraining run, a benchmark, or the demo",
        description="Training curves, masked leads reconstructed beside the truth, an embedding map and, "
        "for benchmarks, the metrics table and ROC curves, for every run found in RUN_DIR (or one level down).",
    )
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="HTML file (default RUN_DIR/report.html)")
    parser.add_argument("--label-set", help="label set that colours the embedding map (default: the most labelled)")


def run_report(args: argparse.Namespace) -> int:
    from coreecg.report.page import write_report

    path = write_report(args.run_dir, args.out, label_set=args.label_set, log=_log)
    print(f"report: {path}")
    return 0


def _add_export(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="an encoder or fine-tuned classifier as ONNX (dynamic batch), with its input contract",
        description="Writes OUT (ONNX, opset 17, dynamic batch axis) and OUT.json, the input contract: "
        "normalized crops batch x 12 x crop at the model's rate, a lead mask and each record's std "
        "(see docs/deploy.md). Needs the export extra: pip install 'coreecg[export]'.",
    )
    parser.add_argument("model", help="an encoder (folder, run folder or shipped name) or a classifier folder")
    parser.add_argument("--out", required=True, help="the .onnx file to write")


def run_export(args: argparse.Namespace) -> int:
    from coreecg.export import export_model

    try:
        meta = export_model(args.model, args.out)
    except ModuleNotFoundError as error:
        raise ValueError(f"{error.name} is not installed: pip install 'coreecg[export]'") from None
    print(f"{args.out} ({meta['output']}; input contract in {args.out}.json)")
    return 0


def add_transfer_commands(commands) -> dict:
    """Register the commands; returns name → runner."""
    _add_probe(commands)
    _add_finetune(commands)
    _add_predict(commands)
    _add_embed(commands)
    _add_benchmark(commands)
    _add_report(commands)
    _add_compare(commands)
    _add_export(commands)
    return {
        "export": run_export,
        "compare": run_compare,
        "report": run_report,
        "probe": run_probe_or_finetune,
        "finetune": run_probe_or_finetune,
        "predict": run_predict,
        "embed": run_embed,
        "benchmark": run_benchmark_command,
    }
