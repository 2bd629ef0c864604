"""Training state on disk without pickle: tensors in a safetensors file, everything else as JSON inside it.

A checkpoint holds weights, optimizer moments, RNG streams, step counters and the config. ``torch.save``
pickles all of that, and unpickling a file someone hands you can run any code it carries. Here the
tensors go through safetensors (a flat table of dtype, shape and bytes) and the rest of the nested
structure (dicts, lists, tuples, numbers, strings, NumPy arrays) is JSON in the file's metadata, with
each tensor replaced by a reference. Loading checks the structure and never evaluates anything.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from coreecg.errors import first_line
from coreecg.files import write_atomically

FORMAT = "coreecg-state"
FORMAT_VERSION = 1
_TAG = "__coreecg__"  # key of the one-entry dicts that stand for a tensor, array, tuple or non-string-keyed dict


# What a well-formed state whose contents do not fit its reader raises (missing keys, wrong shapes, ...).
CONTENT_ERRORS = (KeyError, TypeError, IndexError, RuntimeError, AttributeError)


class StateFileError(ValueError):
    """A state file that cannot be used; the message names the file and the problem."""


def unusable(path: str, what: str, error: BaseException) -> StateFileError:
    """The error for a readable state file whose contents do not fit what reads it."""
    return StateFileError(f"{path}: not a usable {what} ({type(error).__name__}: {first_line(error)})")


def save_state(path: str, state: dict) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous file intact."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), "tree": json.dumps(tree)}
    write_atomically(path, lambda temp: save_file(tensors, temp, metadata=metadata))


def load_state(path: str) -> dict:
    """The state ``save_state`` wrote, with tensors on the CPU; ``StateFileError`` if it is anything else."""
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            _check_header(path, metadata)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except StateFileError:
        raise
    except FileNotFoundError:
        raise StateFileError(f"{path}: no such file") from None
    except Exception as error:  # safetensors raises its own types for damaged files, and OSError for I/O
        raise StateFileError(f"{path}: not a readable coreecg state file ({first_line(error)})") from None
    try:
        tree = json.loads(metadata["tree"])
        state = _decode(tree, tensors, path)
    except (KeyError, json.JSONDecodeError) as error:
        raise StateFileError(f"{path}: state description is missing or not JSON ({error})") from None
    except RecursionError:
        raise StateFileError(f"{path}: state description is nested too deeply") from None
    if not isinstance(state, dict):
        raise StateFileError(f"{path}: state is not a mapping")
    return state


def _check_header(path: str, metadata: dict) -> None:
    if metadata.get("format") != FORMAT:
        raise StateFileError(f"{path}: not a coreecg state file (format {metadata.get('format')!r})")
    if metadata.get("version") != str(FORMAT_VERSION):
        raise StateFileError(
            f"{path}: state file version {metadata.get('version')!r}, this coreecg reads {FORMAT_VERSION}"
        )


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
        return {_TAG: "tensor", "key": key}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot be saved in a state file")
        key = str(len(tensors))
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {_TAG: "ndarray", "key": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and _TAG not in value:
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {_TAG: "items", "items": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_TAG: "float", "repr": repr(value)}
    raise TypeError(f"a state file cannot hold a {type(value).__name__}")


_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _decode(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, path) for v in value]
    if not isinstance(value, dict):
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise StateFileError(f"{path}: unexpected value of type {type(value).__name__} in the state")
    tag = value.get(_TAG)
    if tag is None:
        return {k: _decode(v, tensors, path) for k, v in value.items()}
    if tag in ("tensor", "ndarray"):
        key = value.get("key")
        tensor = tensors.get(key) if isinstance(key, str) else None
        if tensor is None:
            raise StateFileError(f"{path}: the state refers to tensor {value.get('key')!r}, which the file lacks")
        return tensor if tag == "tensor" else tensor.numpy()
    if tag == "tuple" and isinstance(value.get("items"), list):
        return tuple(_decode(v, tensors, path) for v in value["items"])
    if tag == "items" and isinstance(value.get("items"), list):
        pairs = value["items"]
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise StateFileError(f"{path}: malformed mapping in the state")
        try:
            return {_decode(k, tensors, path): _decode(v, tensors, path) for k, v in pairs}
        except TypeError:  # an unhashable key
            raise StateFileError(f"{path}: malformed mapping key in the state") from None
    if tag == "float" and value.get("repr") in _NON_FINITE:
        return _NON_FINITE[value["repr"]]
    raise StateFileError(f"{path}: unknown entry {tag!r} in the state")


def refuse_pickled(path: str, replacement: str) -> None:
    """Stop with a clear message when a run folder holds a pickled state of an earlier coreecg."""
    if os.path.isfile(path):
        raise StateFileError(
            f"{path}: a pickled training state (written by an earlier coreecg, or by someone else) is never "
            f"loaded, since unpickling can run code; this coreecg keeps its state in {replacement}. "
            "Start a new run folder, or delete the file to start this one over"
        )
