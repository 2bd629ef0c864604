"""Atomic file writes: a crash or a kill mid-write leaves the previous file intact, never half a file."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable


def write_atomically(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(temp_path)`` on a temporary file beside ``path``, then rename it over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(temp)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; the result gets ordinary permissions
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def file_digest(path: str) -> dict:
    """Size and SHA-256 of a file, read in blocks (stores' shards are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def read_json(path: str):
    """A JSON file's content; ``ValueError`` naming the file when it is not JSON (a missing file stays an
    ``OSError``, which names it too)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (ValueError, RecursionError) as error:  # JSON and text-encoding errors alike
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def read_array(path: str, mmap: bool = False):
    """One ``.npy`` array (memory-mapped with ``mmap``), never unpickled; ``ValueError`` naming the file for
    anything else: a missing or truncated file, a damaged header (NumPy parses it, and a flipped byte can
    make that raise almost anything), an ``.npz`` archive or an object array."""
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as error:
        raise ValueError(f"{path}: not a readable .npy array ({type(error).__name__}: {error})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise ValueError(f"{path}: not a readable .npy array (it is an .npz archive)")
    return array


def write_json(path: str, data, sort_keys: bool = False) -> None:
    def write(temp: str) -> None:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=sort_keys)
            handle.write("\n")

    write_atomically(path, write)


def write_text(path: str, text: str) -> None:
    def write(temp: str) -> None:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)

    write_atomically(path, write)
