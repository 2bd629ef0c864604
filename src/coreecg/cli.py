"""The ``coreecg`` command. Thin: parse arguments, build objects, call the library, report errors plainly."""

from __future__ import annotations

import argparse
import json
import os
import sys

from coreecg.cli_transfer import add_transfer_commands
from coreecg.errors import TrainingError
from coreecg.preprocess import PrepConfig
from coreecg.readers import SOURCE_KINDS
from coreecg.readers.base import Source
from coreecg.record import SourceError
from coreecg.store import Store, StoreError
from coreecg.version import __version__

# Positional key=value lists of the commands that take them; such items may also follow the options.
KEY_VALUE_LISTS = ("items", "settings", "overrides")

KIND_HELP = {
    "ptbxl": "PTB-XL official layout (ptbxl_database.csv, scp_statements.csv, records100/500)",
    "ptbxl-tables": "records folder + PTB-XL label tables in the MERL benchmark format (--tables)",
    "cinc": "PhysioNet/CinC 2020/2021 folder (.hea + .mat, SNOMED Dx codes), walked recursively",
    "wfdb": "any folder of WFDB records, walked recursively",
    "numpy": "a .npy array records × leads × time (needs --fs and --leads; --meta for labels)",
    "code15": "CODE-15%% HDF5 files (tracings N × 4096 × 12 at 400 Hz) + exams.csv",
    "synthetic": "built-in seeded 12-lead ECGs with labelled conditions (no PATH; --records, --fs, --seconds)",
}


def _add_prepare(commands) -> None:
    kinds = "\n".join(f"  {kind:13s} {text}" for kind, text in KIND_HELP.items())
    parser = commands.add_parser(
        "prepare",
        help="convert an ECG collection into a memory-mapped store",
        description=f"Convert an ECG collection into a store.\n\nkinds:\n{kinds}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=sorted(SOURCE_KINDS))
    parser.add_argument("path", nargs="?", help="the collection's folder or file (none for synthetic)")
    parser.add_argument("--out", required=True, help="store folder to create or resume")
    defaults = PrepConfig()
    parser.add_argument("--rate", type=float, default=defaults.fs, help="store sampling rate, Hz (%(default)s)")
    parser.add_argument(
        "--segment-seconds", type=float, default=defaults.segment_seconds, help="segment length (%(default)s s)"
    )
    parser.add_argument(
        "--band",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=[defaults.band_low, defaults.band_high],
        help="band-pass edges in Hz (%(default)s); LOW 0 gives a low-pass",
    )
    parser.add_argument("--dtype", choices=["float32", "float16"], default=defaults.dtype)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (%(default)s)")
    parser.add_argument("--shard-size", type=int, default=1000, help="records per shard (%(default)s)")
    parser.add_argument("--shard", metavar="I/N", help="convert only part I of N (for several machines)")
    parser.add_argument("--strict", action="store_true", help="stop at the first record that cannot be stored")
    group = parser.add_argument_group("source options")
    group.add_argument("--variant", choices=["lr", "hr"], default="lr", help="PTB-XL: records100 (lr) or 500 (hr)")
    group.add_argument("--tables", help="ptbxl-tables: folder of label tables (default PATH/ptbxl_splits)")
    group.add_argument("--dx-mapping", help="cinc: folder with dx_mapping_scored.csv (default: PATH)")
    group.add_argument("--fs", type=float, help="numpy: sampling rate of the array; synthetic: generation rate (500)")
    group.add_argument("--leads", help="numpy: lead names of the array's rows, comma-separated")
    group.add_argument("--meta", help="numpy: metadata/label CSV, one row per record")
    group.add_argument("--label-set", default="labels", help="numpy: name of the label set (%(default)s)")
    group.add_argument("--exams", help="code15: exams.csv (default: beside the HDF5 files)")
    group.add_argument("--scale-to-mv", type=float, default=1.0, help="code15: factor to millivolts (%(default)s)")
    group.add_argument("--records", type=int, default=2000, help="synthetic: how many records (%(default)s)")
    group.add_argument("--seconds", type=float, default=10.0, help="synthetic: length of each record (%(default)s s)")
    group.add_argument("--seed", type=int, default=0, help="synthetic: seed of the collection (%(default)s)")


def build_source(args: argparse.Namespace) -> Source:
    kind = args.kind
    if kind == "synthetic":
        if args.path:
            raise ValueError("synthetic records are generated, not read: give no PATH (see --records, --fs)")
        return SOURCE_KINDS[kind](records=args.records, fs=args.fs or 500.0, seconds=args.seconds, seed=args.seed)
    if not args.path:
        raise ValueError(f"prepare {kind} needs the PATH of the collection")
    if kind == "ptbxl":
        return SOURCE_KINDS[kind](args.path, variant=args.variant)
    if kind == "ptbxl-tables":
        return SOURCE_KINDS[kind](args.path, tables=args.tables, variant=args.variant)
    if kind == "cinc":
        return SOURCE_KINDS[kind](args.path, dx_mapping=args.dx_mapping)
    if kind == "numpy":
        leads = [name.strip() for name in args.leads.split(",")] if args.leads else None
        return SOURCE_KINDS[kind](args.path, fs=args.fs, leads=leads, meta=args.meta, label_set=args.label_set)
    if kind == "code15":
        return SOURCE_KINDS[kind](args.path, exams=args.exams, scale_to_mv=args.scale_to_mv)
    return SOURCE_KINDS[kind](args.path)


def run_prepare(args: argparse.Namespace) -> int:
    from coreecg.prepare import StrictReject, parse_partition, prepare_store

    config = PrepConfig(
        fs=args.rate,
        segment_seconds=args.segment_seconds,
        band_low=args.band[0],
        band_high=args.band[1],
        dtype=args.dtype,
    )
    source = build_source(args)
    try:
        result = prepare_store(
            source,
            args.out,
            config,
            workers=max(1, args.workers),
            shard_size=args.shard_size,
            partition=parse_partition(args.shard),
            strict=args.strict,
        )
    except StrictReject as error:
        print(f"coreecg prepare --strict: rejected {error}", file=sys.stderr)
        return 1
    if result.finalized and result.rejected:
        _print_rejects(args.out)
    return 0


def _print_rejects(out: str, limit: int = 10) -> None:
    import pandas as pd

    rejects = pd.read_csv(os.path.join(out, "rejects.csv"), dtype=str, keep_default_na=False)
    print(f"{len(rejects)} rejected record(s), listed in {os.path.join(out, 'rejects.csv')}:", file=sys.stderr)
    for row in rejects.head(limit).itertuples():
        print(f"  {row.path}: {row.reason}", file=sys.stderr)
    if len(rejects) > limit:
        print(f"  ... and {len(rejects) - limit} more", file=sys.stderr)


def _add_inspect(commands) -> None:
    parser = commands.add_parser(
        "inspect", help="summarize a store (counts, settings, label sets, flags) and check its files"
    )
    parser.add_argument("store")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    parser.add_argument(
        "--verify", action="store_true", help="also check every file's SHA-256 against the one written by prepare"
    )


def run_inspect(args: argparse.Namespace) -> int:
    store = Store(args.store)
    manifest = store.manifest
    if args.json:
        print(json.dumps(manifest, indent=1))
        return 0
    config = store.config
    print(
        f"{store.path}: {manifest['stored']} records stored, {manifest['rejected']} rejected "
        f"(of {manifest['records_in']}), {manifest['segments']} segments"
    )
    print(
        f"  {config.fs:g} Hz, {config.segment_seconds:g} s segments, band {config.band_low}-{config.band_high} Hz, "
        f"{config.dtype}, settings hash {store.config_hash}"
    )
    print(f"  source: {manifest['source']}")
    for name, info in manifest["label_sets"].items():
        print(f"  label set {name}: {len(info['classes'])} classes, {info['labelled']} records labelled")
    if manifest["flags"]:
        print("  quality flags: " + ", ".join(f"{k} {v}" for k, v in manifest["flags"].items()))
    problems = store.verify(content=args.verify)
    for problem in problems:
        print(f"coreecg inspect: damaged: {problem}", file=sys.stderr)
    if problems:
        print(
            f"coreecg inspect: {len(problems)} problem(s); re-run the coreecg prepare command that made the store "
            "to repair it",
            file=sys.stderr,
        )
        return 2
    print("  files: " + ("sizes and SHA-256 match the manifest" if args.verify else "sizes match the manifest"))
    return 0


def _add_split(commands) -> None:
    parser = commands.add_parser(
        "split",
        help="give a store without splits train/val/test parts (patients kept together, labels stratified)",
        description="Assign every record of a store to train, val or test, keeping each patient in one part "
        "(where the store knows patients) and every label set's class proportions in each part (iterative "
        "stratification). Written into the store, so probe, finetune and benchmark then use --train train "
        "--val val --test test.",
    )
    parser.add_argument("store")
    parser.add_argument("--val", type=float, default=0.1, help="share of records for validation (%(default)s)")
    parser.add_argument("--test", type=float, default=0.1, help="share of records for test (%(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-set", action="append", help="stratify on this label set (repeat; default: all)")
    parser.add_argument("--force", action="store_true", help="replace splits the store already has")


def run_split(args: argparse.Namespace) -> int:
    from coreecg.splitting import split_store

    made = split_store(args.store, args.val, args.test, args.seed, args.label_set, args.force)
    counts = ", ".join(f"{name} {count}" for name, count in made["records"].items())
    print(f"{args.store}: {counts} records (groups: {made['groups']}; seed {made['seed']})")
    return 0


def _add_pretrain(commands) -> None:
    parser = commands.add_parser(
        "pretrain",
        help="pretrain a CoRe-ECG encoder on one or more stores (CPU, GPU, or torchrun)",
        description="Pretrain a CoRe-ECG encoder. Settings come from an optional YAML config "
        "(see docs/configuration.md) and section.key=value overrides, e.g. train.steps=2000 "
        "objective.preset=no-fda. Running the same command again resumes an interrupted run. "
        "Several GPUs or nodes: torchrun --nproc_per_node N -m coreecg pretrain ...",
    )
    parser.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value", help="config file and/or overrides")
    parser.add_argument("--out", required=True, help="run folder (created, or resumed if it holds a checkpoint)")
    parser.add_argument("--store", action="append", help="training store (repeat for several); sets data.store")


def run_pretrain(args: argparse.Namespace) -> int:
    from coreecg.distributed import shutdown
    from coreecg.pretrain.config import load_pretrain_config
    from coreecg.pretrain.loop import pretrain

    files = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item]
    if len(files) > 1:
        raise ValueError(f"one config file at most, got {', '.join(files)}")
    if args.store:
        overrides.append(f"data.store={json.dumps(args.store if len(args.store) > 1 else args.store[0])}")
    config = load_pretrain_config(files[0] if files else None, overrides)
    try:
        result = pretrain(config, args.out, log=lambda text: print(text, file=sys.stderr))
    finally:
        shutdown()
    if result.finished and int(os.environ.get("RANK", "0")) == 0:
        print(f"encoder written to {os.path.join(args.out, 'encoder')} (load it with coreecg.load_encoder)")
    return 0


def _add_demo(commands) -> None:
    parser = commands.add_parser(
        "demo",
        help="the whole method on built-in synthetic ECGs: prepare, pretrain, probe, fine-tune, report.html",
        description="Generates labelled synthetic 12-lead ECGs, pretrains CoRe-ECG briefly, probes and fine-tunes "
        "next to a random-init baseline, and writes OUT/report.html. About 10 minutes on a 2-core CPU; "
        "re-running resumes.",
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (%(default)s)")
    parser.add_argument("--records", type=int, default=2000, help="synthetic records (%(default)s)")
    parser.add_argument("--steps", type=int, default=200, help="pretraining steps (%(default)s)")
    parser.add_argument("--seed", type=int, default=0)


def run_demo_command(args: argparse.Namespace) -> int:
    from coreecg.demo import DemoConfig, run_demo

    config = DemoConfig(records=args.records, pretrain_steps=args.steps, seed=args.seed)
    result = run_demo(args.out, config, log=lambda text: print(text, file=sys.stderr, flush=True))
    print("validation macro AUROC (synthetic conditions):")
    for row, columns in result["validation_macro_auroc"].items():
        print(f"  {row:28s} " + "  ".join(f"{column}: {value:.3f}" for column, value in columns.items()))
    print(f"report: {result['report']}")
    return 0


def _attach_dashed_values(argv: list[str]) -> list[str]:
    """``--shard -1/4`` as ``--shard=-1/4``: argparse takes a value starting with '-' for an option and would
    answer "expected one argument"; attached, the value reaches the check that says what is wrong with it."""
    out = list(argv)
    for i in range(len(out) - 1):
        if out[i] == "--shard" and out[i + 1].startswith("-"):
            out[i : i + 2] = [f"--shard={out[i + 1]}", ""]
    return [item for item in out if item != ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coreecg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"coreecg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_prepare(commands)
    _add_inspect(commands)
    _add_split(commands)
    _add_pretrain(commands)
    _add_demo(commands)
    runners = {
        "prepare": run_prepare,
        "inspect": run_inspect,
        "split": run_split,
        "pretrain": run_pretrain,
        "demo": run_demo_command,
    }
    runners |= add_transfer_commands(commands)
    args, extra = parser.parse_known_args(_attach_dashed_values(sys.argv[1:] if argv is None else argv))
    settings = next((name for name in KEY_VALUE_LISTS if hasattr(args, name)), None)
    if extra and settings and all("=" in item and not item.startswith("-") for item in extra):
        setattr(args, settings, getattr(args, settings) + extra)  # key=value settings may follow the options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    run = runners[args.command]
    try:
        return run(args)
    except (SourceError, StoreError, TrainingError, ValueError, OSError) as error:
        print(f"coreecg {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = {
            "prepare": "finished shards are kept",
            "pretrain": "the last checkpoint is kept",
            "benchmark": "finished cells are kept",
            "probe": "finished cells are kept",
            "finetune": "finished cells are kept",
        }.get(args.command, "nothing was written")
        print(f"coreecg {args.command}: interrupted; {kept}, re-run to resume", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not bad input: one line that says so; COREECG_TRACEBACK=1 shows where
        if os.environ.get("COREECG_TRACEBACK"):
            raise
        print(
            f"coreecg {args.command}: internal error ({type(error).__name__}: {_one_line(error)}); this is a bug "
            "in coreecg, please report it with the output of the same command run with COREECG_TRACEBACK=1",
            file=sys.stderr,
        )
        return 1


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
