"""Config loading: strict keys and types, presets, overrides, documented keys, the repository's own files."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from coreecg.config import ConfigError
from coreecg.pretrain.config import OBJECTIVE_PRESETS, PretrainConfig, load_pretrain_config, resolve

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown key 'train\.lr_max'; did you mean 'lr'\?"):
        resolve({"data": {"store": "s"}, "train": {"lr_max": 1.0}})
    with pytest.raises(ConfigError, match=r"unknown key 'train\.zzz'; valid keys: steps, batch_size"):
        resolve({"data": {"store": "s"}, "train": {"zzz": 1.0}})
    with pytest.raises(ConfigError, match=r"unknown key 'LR'; did you mean 'train\.lr'\?"):
        resolve({"data": {"store": "s"}, "LR": 1.0})
    with pytest.raises(ConfigError, match=r"unknown key 'mask.time_ratoi'; did you mean 'time_ratio'\?"):
        resolve({"data": {"store": "s"}, "mask": {"time_ratoi": 0.4}})
    with pytest.raises(ConfigError, match=r"unknown key 'optim'"):
        resolve({"data": {"store": "s"}, "optim": {}})


def test_wrong_types_and_bad_values_are_named():
    with pytest.raises(ConfigError, match=r"train.steps: expected an integer, got '10k'"):
        resolve({"data": {"store": "s"}, "train": {"steps": "10k"}})
    with pytest.raises(ConfigError, match=r"augment.fda: expected true or false"):
        resolve({"data": {"store": "s"}, "augment": {"fda": "yes please"}})
    with pytest.raises(ConfigError) as error:
        resolve({"data": {"store": "s"}, "mask": {"time_ratio": 1.0}, "model": {"dim": 100, "heads": 3}})
    assert "mask.time_ratio must be in [0, 1)" in str(error.value)
    assert "model: encoder heads 3 must divide dim 100" in str(error.value)
    with pytest.raises(ConfigError, match=r"data\.store is required"):
        resolve({})
    with pytest.raises(ConfigError, match=r"data\.scale_mv must be a positive amplitude in mV, got 0"):
        resolve({"data": {"store": "s", "scale_mv": 0}})
    with pytest.raises(ConfigError, match=r"data\.amplitude_kept below 1 needs scale_mv"):
        resolve({"data": {"store": "s", "amplitude_kept": 0.5}})


def test_presets_apply_under_explicit_keys():
    config = resolve({"data": {"store": "s"}, "objective": {"preset": "no-fda"}})
    assert config.augment.fda is False and config.mask.mode == "stdm"
    config = resolve({"data": {"store": "s"}, "objective": {"preset": "contrastive-only"}})
    assert (config.objective.reconstruct, config.objective.align, config.mask.mode) == (False, False, "none")
    config = resolve({"data": {"store": "s"}, "objective": {"preset": "no-stdm"}, "mask": {"mode": "random"}})
    assert config.mask.mode == "random"  # the file's key wins over the preset
    with pytest.raises(ConfigError, match=r"objective\.align needs contrastive and reconstruct"):
        resolve({"data": {"store": "s"}, "objective": {"contrastive": False}})


def test_overrides_parse_as_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  store: here\ntrain:\n  steps: 5\n  warmup_steps: 1\n")
    config = load_pretrain_config(str(path), ["train.lr=2e-4", "data.splits=[train, val]", "probe.label_set=null"])
    assert config.train.lr == 2e-4 and config.data.splits == ["train", "val"] and config.probe.label_set is None
    assert config.train.steps == 5
    with pytest.raises(ConfigError, match=r"not of the form section\.key=value"):
        load_pretrain_config(str(path), ["train.lr"])
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_pretrain_config(str(path))


def test_model_preset_sizes():
    default = resolve({"data": {"store": "s"}}).model.encoder()
    assert (default.dim, default.depth, default.heads, default.amplitude_token) == (128, 4, 4, True)  # the protocol's
    tiny = resolve({"data": {"store": "s"}, "model": {"preset": "tiny"}}).model.encoder()
    assert (tiny.dim, tiny.depth, tiny.heads) == (192, 6, 3)
    custom = resolve({"data": {"store": "s"}, "model": {"preset": "small", "depth": 4}}).model.encoder()
    assert (custom.dim, custom.depth, custom.heads) == (384, 4, 6)


def _all_keys(cls, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            keys += _all_keys(f.default_factory, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def test_every_key_is_documented_with_its_default():
    text = (ROOT / "docs/configuration.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+(?:\.[a-z_]+)?)` \|", text, re.M))
    keys = set(_all_keys(PretrainConfig))
    defaults = dataclasses.asdict(PretrainConfig())
    for key, shown in re.findall(r"^\| `([a-z_]+(?:\.[a-z_]+)?)` \| `([^`]+)` \|", text, re.M):
        value = defaults
        for part in key.split("."):
            value = value[part]
        parsed = yaml.safe_load(shown)
        parsed = float(parsed) if isinstance(value, float) and isinstance(parsed, str) else parsed  # YAML 1.1: 1e-3
        assert parsed == value, f"docs/configuration.md shows {key} = {shown}, the code has {value!r}"
    assert len(keys) > 40
    assert keys - documented == set(), "keys missing from docs/configuration.md"
    assert documented - keys == set(), "docs/configuration.md documents keys that do not exist"
    for name in OBJECTIVE_PRESETS:
        assert f"`{name}`" in (ROOT / "docs/configuration.md").read_text()


@pytest.mark.parametrize("path", sorted((ROOT / "configs/pretrain").glob("*.yaml")), ids=lambda p: p.name)
def test_repository_configs_resolve(path):
    config = load_pretrain_config(str(path), ["data.store=somewhere"])
    assert path.stem == config.model.preset


def test_evaluation_doc_lists_every_benchmark_key():
    from coreecg.evaluation.benchmark import BenchmarkConfig, MethodSpec

    text = (ROOT / "docs/evaluation.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.*]+)` \|", text, re.M))
    keys = set(_all_keys(BenchmarkConfig)) | {f"methods.*.{f.name}" for f in dataclasses.fields(MethodSpec)}
    assert len(keys) > 30
    assert keys - documented == set(), "keys missing from docs/evaluation.md"
    assert documented - keys == set(), "docs/evaluation.md documents keys that do not exist"


def test_repository_benchmark_configs_load():
    from coreecg.evaluation.benchmark import grid, load_benchmark_config
    from coreecg.pretrain.config import load_pretrain_config

    for path in sorted([*(ROOT / "configs/benchmark").glob("*.yaml"), *(ROOT / "experiments").glob("*/*.yaml")]):
        config = load_benchmark_config(str(path), ["store=somewhere"])
        assert config.test is None, f"{path.name}: the test part must stay unset in the repository"
        assert grid(config)
        for name, method in config.methods.items():
            if method.pretrain:  # the pretraining each method names resolves, with its overrides
                pretrain = load_pretrain_config(
                    str(ROOT / method.pretrain), [*method.overrides, "data.store=somewhere"]
                )
                assert pretrain.train.steps > 0, f"{path.name}: {name}"


def test_the_cpu_preset_is_the_default_method_plus_its_online_probe():
    preset = dataclasses.asdict(load_pretrain_config(str(ROOT / "configs/pretrain/cpu.yaml"), ["data.store=s"]))
    default = dataclasses.asdict(resolve({"data": {"store": "s"}}))
    assert preset["probe"].pop("label_set") == "super_class" and default["probe"].pop("label_set") is None
    assert preset == default
