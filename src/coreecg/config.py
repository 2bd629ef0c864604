"""Configs as nested dataclasses, read from YAML with ``key=value`` overrides, checked strictly.

A misspelt key is an error naming it and the closest valid key; a value of the wrong type is an
error naming the key, the value and the expected type. Nothing is silently ignored, because an
ablation whose switch was misspelt would quietly run the wrong experiment.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and the problem."""


# Settings schema of run and benchmark folders. Schema 2 made the validated PTB-XL protocol the default
# and dropped the "unset" states that kept schema-1 runs' identity; a folder of another schema is refused.
SCHEMA_VERSION = 2
SCHEMA_CHANGES = (
    "schema 2 made the PTB-XL protocol the defaults (model.preset cpu, model.amplitude_token true, "
    "augment.amplitude_jitter 0.2, mask.lead_probability 0.4, objective.temperature 0.1, train.steps 3000, "
    "train.batch_size 64, warmup_steps 200) and gave every option a value (no 'unset')"
)


def check_schema(found, where: str) -> None:
    """Refuse settings written under another schema, saying what changed."""
    if found != SCHEMA_VERSION:
        raise ConfigError(
            f"{where} was written under settings schema {found if found is not None else 1}, this coreecg reads "
            f"schema {SCHEMA_VERSION} ({SCHEMA_CHANGES}); start a new folder, or use the coreecg that wrote it"
        )


def read_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror or error})") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``section.key=value`` strings on top of ``data``; values are parsed as YAML (``1e-3``, ``[I, II]``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({error})") from error
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation, where: str) -> Any:
    """``value`` checked against a field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of {_type_name(item_type)}, got {value!r}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of names to {_type_name(value_type)}, got {value!r}")
        return {_coerce(k, key_type, where): _coerce(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return build(annotation, value, where)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as text
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {value!r}")
    if annotation is float and not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


def build(cls: type[T], data: dict, where: str = "") -> T:
    """An instance of dataclass ``cls`` from a mapping; unknown keys and wrong types raise ``ConfigError``."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = closest_key(str(key), cls)
            hint = f"; did you mean {close!r}?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown key {path!r}{hint}")
        values[key] = _coerce(value, hints[key], path)
    return cls(**values)


def closest_key(key: str, cls: type) -> str | None:
    """The key of dataclass ``cls`` a misspelt ``key`` most likely meant: a near spelling (any case), a key
    it starts or ends with (``lr_max`` -> ``lr``), or such a key one section down (``lr`` -> ``train.lr``)."""
    names = [f.name for f in dataclasses.fields(cls)]
    folded = {name.casefold(): name for name in names}
    wanted = key.casefold()
    if wanted in folded:
        return folded[wanted]
    close = difflib.get_close_matches(wanted, list(folded), n=1)
    if close:
        return folded[close[0]]
    parts = [name for name in names if wanted.startswith(name + "_") or wanted.endswith("_" + name)]
    if parts:
        return max(parts, key=len)
    hints = typing.get_type_hints(cls)
    for name in names:
        if dataclasses.is_dataclass(hints[name]):
            inner = {f.name.casefold(): f.name for f in dataclasses.fields(hints[name])}
            if wanted in inner:
                return f"{name}.{inner[wanted]}"
    return None


def to_dict(config) -> dict:
    """A dataclass config as plain data (what gets written to a run's config.yaml)."""
    return dataclasses.asdict(config)


def describe_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two config dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(describe_differences(a, b, path + "."))
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out
