"""Prepare throughput: records converted per second into a store, end to end (read, preprocess, write).

python bench/bench_prepare.py ptbxl ../shared/data/ptbxl
python bench/bench_prepare.py ptbxl-tables ~/data/ptb-xl --append BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import publish, table

from coreecg.prepare import prepare_store
from coreecg.preprocess import PrepConfig
from coreecg.readers import SOURCE_KINDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(SOURCE_KINDS))
    parser.add_argument("path")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--append", help="append the result table to this Markdown file")
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        out = Path(tempfile.mkdtemp(prefix="coreecg-bench-")) / "store"
        try:
            source = SOURCE_KINDS[args.kind](args.path)
            result = prepare_store(source, str(out), PrepConfig(fs=args.rate), workers=workers, log=lambda m: None)
        finally:
            shutil.rmtree(out.parent, ignore_errors=True)
        rows.append(
            [
                args.kind,
                result.records_in,
                result.stored,
                result.rejected,
                workers,
                f"{result.seconds:.1f}",
                f"{result.records_in / result.seconds:.0f}",
            ]
        )
    body = table(["source", "records in", "stored", "rejected", "workers", "seconds", "records/s"], rows)
    publish(f"Prepare throughput: {args.kind} {Path(args.path).name}", body, args.append)


if __name__ == "__main__":
    main()
