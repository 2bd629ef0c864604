"""Shared by the benchmark scripts: describe the machine and append a result table to BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB RAM"
    return f"{cpu}, {os.cpu_count()} cores{memory}; Python {platform.python_version()}, torch {torch.__version__}"


def timed(run, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs after one warm-up, and the last result."""
    result = run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(title: str, body: str, append_to: str | None) -> None:
    """Print the section; with ``append_to``, also append it (with command, machine and date) to that file."""
    command = "python " + " ".join(sys.argv)
    section = (
        f"\n## {title}\n\n- command: `{command}`\n- machine: {machine()}\n"
        f"- date: {datetime.date.today().isoformat()}\n\n{body}\n"
    )
    print(section)
    if append_to:
        with open(append_to, "a", encoding="utf-8") as handle:
            handle.write(section)
