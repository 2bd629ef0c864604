"""Transfer on the real sample store: selection, probe, fine-tune, predict, embed, benchmark, and that test labels
can never influence what is chosen on validation."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PTBXL, needs_sample, quiet
from safetensors.torch import load_file

from coreecg import cli_transfer
from coreecg.cli import main
from coreecg.dataset import Amplitude
from coreecg.evaluation.benchmark import (
    MethodSpec,
    ProbeSettings,
    load_benchmark_config,
    pretrain_key,
    pretraining_config,
    run_benchmark,
)
from coreecg.evaluation.classifier import load_classifier, predict_folder, predict_store, record_probabilities
from coreecg.evaluation.features import random_encoder, record_embeddings
from coreecg.evaluation.finetune import FinetuneConfig, finetune
from coreecg.evaluation.probe import fit_logistic, fit_probe, probe_selection
from coreecg.evaluation.selection import Part, parse_part, select
from coreecg.model import EMBEDDING_FEATURES
from coreecg.optim import layer_decay_groups
from coreecg.prepare import prepare_store
from coreecg.preprocess import PrepConfig
from coreecg.pretrained import load_encoder
from coreecg.readers import SOURCE_KINDS
from coreecg.readers.base import read_wfdb_record
from coreecg.store import Store, StoreError

TASK = "superdiagnostic"
PARTS = {"train": "1-7", "val": "9", "test": "8"}  # the sample has no fold 10; fold 8 plays the test part
# On CPU: two runs are compared, and CUDA kernels are not bit-reproducible between runs.
FAST_FINETUNE = FinetuneConfig(epochs=3, batch_size=32, min_steps_per_eval=3, patience=3, seed=0, device="cpu")


@pytest.fixture(scope="module")
def store(ptbxl_store) -> Store:
    return Store(str(ptbxl_store))


@pytest.fixture(scope="module")
def encoder(store):
    torch.set_num_threads(2)
    return random_encoder("cpu", store, crop_seconds=2.5, seed=0)


def _permuted_test(selection, seed: int = 1):
    """The same selection with the test part's labels shuffled across records."""
    order = np.random.default_rng(seed).permutation(len(selection.test.rows))
    selection.test.labels = selection.test.labels[order]
    return selection


class Untouchable:
    """Stands in for test labels: any use at all (indexing, arithmetic, conversion) fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"test labels were read ({name})")

    def __array__(self, *args, **kwargs):
        raise AssertionError("test labels were read (as an array)")

    def __getitem__(self, key):
        raise AssertionError("test labels were read (indexed)")

    def __len__(self):
        raise AssertionError("test labels were read (len)")


def _hidden_test(selection):
    selection.test.labels = Untouchable()
    return selection


def test_parts_parse_and_never_overlap(store):
    assert parse_part("1-3,5") == Part(folds=(1, 2, 3, 5))
    assert parse_part(9) == Part(folds=(9,)) and parse_part([2, 1]) == Part(folds=(1, 2))
    assert parse_part("val") == Part(split="val")
    with pytest.raises(ValueError, match="share"):
        select(store, TASK, train="1-8", val="8-9")
    with pytest.raises(StoreError, match="splits in this store: train, val"):
        select(store, TASK, train="train", val="validation")
    with pytest.raises(StoreError, match=r"no label set 'nope'.*superdiagnostic"):
        select(store, "nope")
    full = select(store, TASK, **PARTS)
    tenth = select(store, TASK, **PARTS, fraction=0.1, seed=2)
    assert set(tenth.train.rows) < set(full.train.rows)
    assert np.isin(store.fold[full.test.rows], [8]).all() and np.isin(store.fold[full.val.rows], [9]).all()


def test_probe_separates_a_planted_signal_and_picks_c_on_validation():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 3)) < 0.3).astype(int)
    x = rng.normal(size=(400, 16))
    x[:, :3] += 3.0 * y  # class j is readable from feature j (Bayes AUROC about 0.98)
    fit = fit_probe(x[:300], y[:300], x[300:], y[300:], ["a", "b", "c"], cs=(1e-4, 1e-2, 1.0))
    assert fit.val_auroc_by_c[fit.probe.c] == max(fit.val_auroc_by_c.values())
    from coreecg.metrics import macro_auroc

    assert macro_auroc(y[300:], fit.probe.scores(x[300:])).value > 0.93


@pytest.mark.parametrize("c", [1e-3, 0.1, 10.0])
def test_newton_probe_reaches_scikit_learns_optimum(c):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8))
    y = np.stack([x[:, 0] + rng.normal(size=300) > 0, x[:, 1] - x[:, 2] + rng.normal(size=300) > 2], 1).astype(int)
    ours = fit_logistic(x, y, c)
    for j in range(y.shape[1]):
        reference = LogisticRegression(C=c, tol=1e-12, max_iter=100_000).fit(x, y[:, j])
        expected = np.r_[reference.coef_[0], reference.intercept_[0]]
        np.testing.assert_allclose(ours[j], expected, rtol=1e-4, atol=1e-6)


def test_probe_scores_a_class_without_positives_by_its_prior():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 4))
    y = np.stack([x[:, 0] > 0, np.zeros(200, bool)], 1).astype(int)
    fit = fit_probe(x[:150], y[:150], x[150:], y[150:], ["a", "never"], cs=(0.1, 1.0))
    assert fit.constant_classes == ["never"]
    assert np.all(fit.probe.scores(x[150:])[:, 1] < 1e-5) and np.all(fit.probe.coef[1] == 0)


def test_test_labels_cannot_change_probe_choices(store, encoder):
    cache: dict[int, np.ndarray] = {}

    def embed(rows):
        missing = [r for r in rows.tolist() if r not in cache]
        if missing:
            cache.update(zip(missing, record_embeddings(encoder, store, np.array(missing)), strict=True))
        return np.stack([cache[r] for r in rows.tolist()])

    honest = probe_selection(embed, select(store, TASK, **PARTS))
    shuffled = probe_selection(embed, _permuted_test(select(store, TASK, **PARTS)))
    hidden = probe_selection(embed, _hidden_test(select(store, TASK, **PARTS)))  # never reads test labels
    assert hidden.chosen == honest.chosen and np.array_equal(hidden.thresholds, honest.thresholds)
    assert honest.chosen["c"] == shuffled.chosen["c"]
    assert honest.chosen["val_auroc_by_c"] == shuffled.chosen["val_auroc_by_c"]
    assert np.array_equal(honest.thresholds, shuffled.thresholds)
    assert np.array_equal(honest.test_probabilities, shuffled.test_probabilities)  # same model on the same records


@needs_sample
def test_test_labels_cannot_change_the_fine_tuned_checkpoint(store, encoder, tmp_path):
    # Fine-tuning runs to the end with test labels that fail on any use, so nothing it chose can depend on them.
    def half():
        return select(store, TASK, **PARTS, fraction=0.5)

    a = finetune(encoder, store, _hidden_test(half()), str(tmp_path / "a"), FAST_FINETUNE, log=quiet)
    b = finetune(encoder, store, _permuted_test(half()), str(tmp_path / "b"), FAST_FINETUNE, log=quiet)
    # With real (permuted) labels the run chooses the same step, thresholds and weights (up to the last bits of
    # multi-threaded CPU float sums, which differ between any two runs).
    assert a.chosen["best_step"] == b.chosen["best_step"]
    assert np.allclose(a.thresholds, b.thresholds, rtol=1e-5, atol=1e-6)
    weights_a = load_file(str(tmp_path / "a" / "classifier" / "model.safetensors"))
    weights_b = load_file(str(tmp_path / "b" / "classifier" / "model.safetensors"))
    assert all(torch.allclose(weights_a[k], weights_b[k], rtol=1e-4, atol=1e-6) for k in weights_a)
    assert b.test_probabilities is not None and b.test_probabilities.shape == (len(b.test_probabilities), 5)
    # the kept checkpoint is the best validation one, and it is what predict applies
    history = a.chosen["history"]
    assert len(history) == 3 and a.chosen["best_val_auroc"] == max(h["val_auroc"] for h in history)
    saved = load_classifier(str(tmp_path / "a"))
    table = predict_store(saved, store, half().val.rows)
    assert np.allclose(table[[f"p_{c}" for c in saved.classes]].to_numpy(), a.val_probabilities, atol=1e-5)
    calls = table[[f"label_{c}" for c in saved.classes]].to_numpy()
    assert np.array_equal(calls, (a.val_probabilities >= a.thresholds).astype(int))


def test_stopped_fine_tuning_resumes_where_it_stopped(store, encoder, tmp_path, monkeypatch):
    import coreecg.evaluation.finetune as finetune_module

    config = FinetuneConfig(epochs=4, batch_size=32, min_steps_per_eval=3, patience=4, seed=0, device="cpu")
    whole = finetune(encoder, store, select(store, TASK, **PARTS), str(tmp_path / "whole"), config, log=quiet)
    score = finetune_module.record_probabilities
    calls = {"n": 0}

    def stop_at_the_third_evaluation(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return score(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "record_probabilities", stop_at_the_third_evaluation)
    with pytest.raises(KeyboardInterrupt):
        finetune(encoder, store, select(store, TASK, **PARTS), str(tmp_path / "split"), config, log=quiet)
    assert (tmp_path / "split" / finetune_module.STATE_FILE).is_file()
    monkeypatch.setattr(finetune_module, "record_probabilities", score)
    messages: list[str] = []
    split = finetune(encoder, store, select(store, TASK, **PARTS), str(tmp_path / "split"), config, log=messages.append)
    assert any(m.startswith("resuming fine-tuning at step") for m in messages)
    assert not (tmp_path / "split" / finetune_module.STATE_FILE).exists()
    # The same steps on the same batches and crops: the same history, up to multi-threaded float sums.
    assert [h["step"] for h in split.chosen["history"]] == [h["step"] for h in whole.chosen["history"]]
    assert np.allclose(
        [h["val_auroc"] for h in split.chosen["history"]], [h["val_auroc"] for h in whole.chosen["history"]], atol=1e-4
    )
    assert np.allclose(split.val_probabilities, whole.val_probabilities, atol=1e-4)
    other = dataclasses.replace(config, lr=5e-4)
    monkeypatch.setattr(finetune_module, "record_probabilities", stop_at_the_third_evaluation)
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        finetune(encoder, store, select(store, TASK, **PARTS), str(tmp_path / "other"), config, log=quiet)
    with pytest.raises(
        ValueError, match=r"finetune-state\.safetensors holds a fine-tuning run with other settings.*lr"
    ):
        finetune(encoder, store, select(store, TASK, **PARTS), str(tmp_path / "other"), other, log=quiet)


def test_layer_decay_scales_lower_layers_down(encoder):
    from coreecg.evaluation.classifier import classifier_from_encoder

    model = classifier_from_encoder(encoder, ["a", "b"], drop_path=0.1)
    depth = model.encoder.config.depth
    groups = layer_decay_groups(model, "encoder.", depth, 0.05, 0.5)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert scale_of[id(model.encoder.patch_embed.weight)] == 0.5 ** (depth + 1)
    assert scale_of[id(model.encoder.blocks[0].mlp[0].weight)] == 0.5**depth
    assert scale_of[id(model.head.weight)] == 1.0 and scale_of[id(model.encoder.norm.weight)] == 1.0
    assert decay_of[id(model.head.bias)] == 0.0 and decay_of[id(model.head.weight)] == 0.05
    assert len(scale_of) == sum(1 for _ in model.parameters())
    assert model.encoder.blocks[-1].drop_path.rate == pytest.approx(0.1)


def test_reduced_leads_see_only_those_leads_as_a_device_recording_them_would(store, encoder):
    rows = select(store, TASK, **PARTS).val.rows[:6]
    full = record_embeddings(encoder, store, rows)
    lead_one = record_embeddings(encoder, store, rows, leads="I")
    limb = record_embeddings(encoder, store, rows, leads="limb")
    assert not np.allclose(full, lead_one) and not np.allclose(limb, lead_one)
    # A recording of lead I alone, embedded from the raw file, must give the same vector: nothing of the other
    # leads (not even their amplitude, through the normalization) may reach the reduced-lead model.
    for i, row in enumerate(rows[:3]):
        raw, _ = read_wfdb_record(str(PTBXL / store.records.path[row]), "r", "test")
        only_i = raw.signal[raw.lead_names.index("I")][None]
        assert np.allclose(encoder.embed(only_i, raw.fs, ["I"]), lead_one[i], atol=1e-4)


def test_an_amplitude_normalization_travels_with_the_encoder_and_its_classifier(store, encoder, tmp_path):
    partial = Amplitude(0.2, kept=0.5)
    fixed = random_encoder("cpu", store, crop_seconds=2.5, seed=0, amplitude=partial)  # same weights as ``encoder``
    fixed.save(str(tmp_path / "enc"))
    loaded = load_encoder(str(tmp_path / "enc"))
    assert loaded.amplitude == partial
    rows = select(store, TASK, **PARTS).val.rows[:3]
    from_store = record_embeddings(loaded, store, rows)
    assert not np.allclose(from_store, record_embeddings(encoder, store, rows), atol=1e-3)
    for i, row in enumerate(rows):  # the raw-signal path applies the same amplitude as the store path
        raw, _ = read_wfdb_record(str(PTBXL / store.records.path[row]), "r", "test")
        assert np.allclose(loaded.embed(raw.signal, raw.fs, raw.lead_names), from_store[i], atol=1e-4)
    selection = select(store, TASK, **PARTS)
    finetune(
        loaded,
        store,
        selection,
        str(tmp_path / "ft"),
        FinetuneConfig(epochs=1, batch_size=32, min_steps_per_eval=2),
        log=quiet,
    )
    saved = load_classifier(str(tmp_path / "ft"))
    assert saved.amplitude == partial
    table = predict_store(saved, store, selection.val.rows)
    p = record_probabilities(saved.model, store, selection.val.rows, saved.crop_samples, amplitude=partial)
    assert np.allclose(table[[f"p_{c}" for c in saved.classes]].to_numpy(), p, atol=1e-5)
    config_path = tmp_path / "enc" / "config.json"
    config_path.write_text(config_path.read_text().replace('"amplitude_kept": 0.5', '"amplitude_kept": 2'))
    with pytest.raises(ValueError, match=r"enc/config\.json: amplitude_kept must be in \(0, 1\], got 2"):
        load_encoder(str(tmp_path / "enc"))


def test_an_amplitude_token_encoder_gets_the_same_record_std_on_every_path(store, tmp_path):
    with_token = random_encoder("cpu", store, crop_seconds=2.5, seed=0, amplitude_token=True)
    with_token.save(str(tmp_path / "enc"))
    loaded = load_encoder(str(tmp_path / "enc"))
    assert loaded.encoder.config.amplitude_token
    selection = select(store, TASK, **PARTS)
    rows = selection.val.rows[:3]
    from_store = record_embeddings(loaded, store, rows)
    only_i = record_embeddings(loaded, store, rows, leads="I")  # the std of lead I alone, not of all 12
    for i, row in enumerate(rows):
        raw, _ = read_wfdb_record(str(PTBXL / store.records.path[row]), "r", "test")
        assert np.allclose(loaded.embed(raw.signal, raw.fs, raw.lead_names), from_store[i], atol=1e-4)
        lead_i = raw.signal[raw.lead_names.index("I")][None]
        assert np.allclose(loaded.embed(lead_i, raw.fs, ["I"]), only_i[i], atol=1e-4)
    finetune(
        loaded,
        store,
        selection,
        str(tmp_path / "ft"),
        FinetuneConfig(epochs=1, batch_size=32, min_steps_per_eval=2),
        log=quiet,
    )
    saved = load_classifier(str(tmp_path / "ft"))
    assert saved.model.encoder.config.amplitude_token
    table = predict_store(saved, store, selection.val.rows)
    p = record_probabilities(saved.model, store, selection.val.rows, saved.crop_samples)
    assert np.allclose(table[[f"p_{c}" for c in saved.classes]].to_numpy(), p, atol=1e-5)


def test_predict_on_a_wfdb_folder_equals_predict_on_its_store(store, encoder, tmp_path):
    finetune(
        encoder,
        store,
        select(store, TASK, **PARTS),
        str(tmp_path / "ft"),
        FinetuneConfig(epochs=1, batch_size=32, min_steps_per_eval=2),
        log=quiet,
    )
    saved = load_classifier(str(tmp_path / "ft" / "classifier"))
    folder = PTBXL / "records100" / "00000"
    table, rejects = predict_folder(saved, str(folder), quiet)
    assert len(rejects) == 0 and len(table) > 0
    wfdb_store = tmp_path / "wfdb-store"
    prepare_store(SOURCE_KINDS["wfdb"](str(folder)), str(wfdb_store), PrepConfig(), log=quiet)
    direct = predict_store(saved, Store(str(wfdb_store)))
    assert table.equals(direct)


def _write_benchmark(tmp_path: Path, store_path: str, **changes) -> Path:
    config = {
        "store": store_path,
        "tasks": [TASK],
        "fractions": [0.5, 1.0],
        "seeds": [0, 1],
        "lead_sets": {"all": "all", "lead I": "I"},
        "train": "1-7",
        "val": 9,
        "test": 8,
        "bootstrap": 50,
        "methods": {
            "random-init": {"random_init": "cpu", "crop_seconds": 2.5},
            "supervised": {
                "random_init": "cpu",
                "crop_seconds": 2.5,
                "protocols": ["finetune"],
                "fractions": [1.0],
                "lead_sets": ["all"],
                "seeds": [0],
            },
        },
        "probe": {"cs": [0.001, 0.1]},
        "finetune": {"epochs": 1, "batch_size": 32, "min_steps_per_eval": 3},
    }
    config.update(changes)
    path = tmp_path / "bench.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    return path


def test_benchmark_writes_the_table_and_resumes_without_recomputing(ptbxl_store, tmp_path):
    path = _write_benchmark(tmp_path, str(ptbxl_store))
    out = tmp_path / "out"
    results = run_benchmark(load_benchmark_config(str(path)), str(out), log=quiet)
    # 2 lead sets × 2 fractions × 2 seeds of probe, plus one fine-tuning cell (its method runs seed 0 only)
    assert len(results["cells"]) == 9
    table = (out / "results.md").read_text()
    assert "| random-init · probe |" in table and "| random-init · probe · lead I |" in table
    assert "| supervised · finetune |" in table and f"{TASK} 50%" in table and f"{TASK} 100%" in table
    assert "test (scored once per model" in table
    assert "### superdiagnostic 100% (val)" in (out / "per_class.md").read_text()
    cell = results["aggregate"]["random-init · probe"][f"{TASK} 50%"]["val"]["auroc"]
    assert cell["ci95"][0] <= cell["mean"] <= cell["ci95"][1] and len(cell["values"]) == 2
    assert cell["std"] > 0  # two seeds draw two different halves of the training records
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    messages: list[str] = []
    run_benchmark(load_benchmark_config(str(path), ["seeds=[0, 1, 2]"]), str(out), log=messages.append)
    assert any("9 of 13 cells were already finished" in m for m in messages)
    assert all((out / "cells" / name).stat().st_mtime_ns == stamp for name, stamp in stamps.items())
    with pytest.raises(ValueError, match=r"probe\.cs"):
        run_benchmark(load_benchmark_config(str(path), ["probe.cs=[1.0]"]), str(out), log=quiet)


def test_compare_pairs_two_rows_on_the_same_records_and_refuses_what_cannot_be_paired(ptbxl_store, tmp_path, capsys):
    methods = {"random-init": {"random_init": "cpu", "crop_seconds": 2.5}}
    path = _write_benchmark(tmp_path, str(ptbxl_store), methods=methods, test=None)
    out = tmp_path / "out"
    results = run_benchmark(load_benchmark_config(str(path)), str(out), log=quiet)
    column = f"{TASK} 100%"
    assert (
        main(
            [
                "compare",
                str(out),
                "--a",
                "random-init",
                "--b",
                "random-init · probe · lead I",
                "--bootstrap",
                "100",
                "--out",
                str(tmp_path / "compare.md"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert (tmp_path / "compare.md").read_text() == table
    line = next(row for row in table.splitlines() if row.startswith(f"| {column} |"))
    a = results["aggregate"]["random-init · probe"][column]["val"]["auroc"]["mean"]
    b = results["aggregate"]["random-init · probe · lead I"][column]["val"]["auroc"]["mean"]
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[1] == "2 / 2" and float(cells[3]) == pytest.approx(a, abs=5e-5)
    assert float(cells[4]) == pytest.approx(b, abs=5e-5) and float(cells[5]) == pytest.approx(a - b, abs=1e-4)
    low, high = (float(x) for x in cells[6].split(" to "))
    assert low <= a - b <= high
    # Row B from a copy of the folder: the same records, so it pairs; and a row against itself is exactly level.
    import shutil

    shutil.copytree(out, tmp_path / "copy")
    assert (
        main(
            [
                "compare",
                str(out),
                "--a",
                "random-init",
                "--b",
                "random-init",
                "--b-run",
                str(tmp_path / "copy"),
                "--columns",
                column,
                "--bootstrap",
                "20",
            ]
        )
        == 0
    )
    assert f"| {column} | 2 / 2 | " in (level := capsys.readouterr().out) and "+0.0000 to +0.0000 | 100.0% |" in level
    assert main(["compare", str(out), "--a", "no such method", "--b", "random-init"]) == 2
    assert "'no such method' is not a row; its rows: 'random-init · probe'; 'random-init · probe · lead I'" in (
        capsys.readouterr().err
    )
    assert main(["compare", str(out), "--a", "random-init", "--b", "random-init", "--columns", "rhythm 10%"]) == 2
    assert "columns ['rhythm 10%'] are not in both rows" in capsys.readouterr().err
    # Other validation records (another fold) cannot be paired: refused, naming the column.
    (tmp_path / "other-fold").mkdir()
    other = _write_benchmark(
        tmp_path / "other-fold",
        str(ptbxl_store),
        methods=methods,
        test=None,
        val=8,
        train="1-7",
        fractions=[1.0],
        seeds=[0],
        lead_sets={"all": "all"},
    )
    run_benchmark(load_benchmark_config(str(other)), str(tmp_path / "fold8"), log=quiet)
    assert (
        main(["compare", str(out), "--a", "random-init", "--b", "random-init", "--b-run", str(tmp_path / "fold8")]) == 2
    )
    assert f"{column}: " in (error := capsys.readouterr().err) and "different validation records" in error
    assert main(["compare", str(tmp_path), "--a", "x", "--b", "y"]) == 2
    assert "no results.json and no finished cell" in capsys.readouterr().err
    # A benchmark stopped part-way (no results.json yet) is compared on its finished cells, seeds counted.
    (out / "results.json").unlink()
    (name_0, seed_0), (name_1, _) = sorted(
        (name, summary["val"]["auroc"])
        for name, summary in results["cells"].items()
        if summary["cell"]["method"] == "random-init"
        and summary["cell"]["lead_set"] == "all"
        and summary["cell"]["fraction"] == 1.0
    )
    assert name_1 == name_0.removesuffix("0") + "1"
    for suffix in (".json", ".npz"):
        (out / "cells" / (name_1 + suffix)).unlink()
    assert (
        main(
            [
                "compare",
                str(out),
                "--a",
                "random-init",
                "--b",
                "random-init · probe · lead I",
                "--columns",
                column,
                "--bootstrap",
                "100",
            ]
        )
        == 0
    )
    partial = next(row for row in capsys.readouterr().out.splitlines() if row.startswith(f"| {column} |"))
    cells = [c.strip() for c in partial.split("|")[1:-1]]
    assert cells[1] == "1 / 2" and float(cells[3]) == pytest.approx(seed_0, abs=5e-5)


def test_benchmark_trains_a_named_pretraining_once_and_reuses_it(ptbxl_store, tmp_path):
    pretrain_yaml = tmp_path / "pretrain.yaml"
    pretrain_yaml.write_text(
        "model: {preset: cpu, dim: 32, depth: 1, heads: 2, decoder_dim: 32, decoder_depth: 1, decoder_heads: 2,"
        " projection_hidden: 32, projection_dim: 16}\n"
        "data: {crop_seconds: 2.5}\n"
        "train: {steps: 2, batch_size: 16, warmup_steps: 1, progress: false, threads: 2}\n"
    )
    methods = {
        "core": {"pretrain": str(pretrain_yaml)},
        "core-again": {"pretrain": str(pretrain_yaml), "overrides": ["train.steps=2"]},  # resolves the same
    }
    path = _write_benchmark(
        tmp_path, str(ptbxl_store), methods=methods, fractions=[1.0], seeds=[0], lead_sets={"all": "all"}, test=None
    )
    messages: list[str] = []
    results = run_benchmark(load_benchmark_config(str(path)), str(tmp_path / "out"), log=messages.append)
    assert sum(m.startswith("pretraining ") for m in messages) == 1
    runs = list((tmp_path / "out" / "pretrain").iterdir())
    assert len(runs) == 1 and (runs[0] / "encoder" / "model.safetensors").is_file()
    assert "test" not in results["cells"][f"core__probe__all__{TASK}__f1__s0"]
    # Editing the pretraining file changes no benchmark setting, but the kept cells came from the old encoder.
    pretrain_yaml.write_text(pretrain_yaml.read_text().replace("steps: 2", "steps: 3"))
    with pytest.raises(ValueError, match=r"methods\.core's encoder: pretrain pretrain-\w+ -> pretrain pretrain-"):
        run_benchmark(load_benchmark_config(str(path)), str(tmp_path / "out"), log=quiet)


def test_a_pretraining_key_names_the_resolved_config(tmp_path):
    pretrain_yaml = tmp_path / "cpu.yaml"
    pretrain_yaml.write_text("model: {preset: cpu}\ntrain: {steps: 5, warmup_steps: 1}\n")
    method = MethodSpec(pretrain=str(pretrain_yaml))
    resolved = pretraining_config(method, "/stores/x")
    key = pretrain_key(method, resolved)
    fixed = dataclasses.replace(resolved, data=dataclasses.replace(resolved.data, scale_mv=0.18))
    assert pretrain_key(method, fixed) != key and pretrain_key(method, pretraining_config(method, "/stores/x")) == key
    assert key.startswith("cpu-") and pretrain_key(method, pretraining_config(method, "/stores/y")) != key


def test_benchmark_config_errors_name_the_key(ptbxl_store, tmp_path):
    with pytest.raises(ValueError, match="did you mean 'fractions'"):
        load_benchmark_config(str(_write_benchmark(tmp_path, str(ptbxl_store))), ["fraction=[0.1]"])
    bad = _write_benchmark(tmp_path, str(ptbxl_store), methods={"x": {"random_init": "cpu", "encoder": "e"}})
    with pytest.raises(ValueError, match="exactly one of encoder, pretrain, random_init"):
        load_benchmark_config(str(bad))
    bad = _write_benchmark(tmp_path, str(ptbxl_store), methods={"x": {"encoder": "e", "scale_mv": 0.2}})
    with pytest.raises(ValueError, match=r"methods\.x: scale_mv, amplitude_kept and amplitude_token are for random"):
        load_benchmark_config(str(bad))
    bad = _write_benchmark(tmp_path, str(ptbxl_store), methods={"x": {"random_init": "cpu", "amplitude_kept": 0.5}})
    with pytest.raises(ValueError, match=r"methods\.x\.amplitude_kept below 1 needs scale_mv"):
        load_benchmark_config(str(bad))
    with pytest.raises(ValueError, match=r"lead_sets\.bad: unknown lead name 'V7'"):
        load_benchmark_config(str(_write_benchmark(tmp_path, str(ptbxl_store), lead_sets={"bad": "V7"})))
    with pytest.raises(ValueError, match=r"probe\.features: 'mean' \(known: g, g\+time, g\+time\+change\)"):
        load_benchmark_config(str(_write_benchmark(tmp_path, str(ptbxl_store))), ["probe.features=mean"])


def test_a_benchmark_folder_of_another_settings_schema_is_refused_saying_what_changed(ptbxl_store, tmp_path):
    methods = {"random-init": {"random_init": "cpu", "crop_seconds": 2.5}}
    path = _write_benchmark(
        tmp_path, str(ptbxl_store), fractions=[1.0], seeds=[0], lead_sets={"all": "all"}, methods=methods, test=None
    )
    out = tmp_path / "out"
    run_benchmark(load_benchmark_config(str(path), ["probe.features=g"]), str(out), log=quiet)
    saved = json.loads((out / "config.json").read_text())
    del saved["schema"]  # as written by schema 1
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(
        ValueError,
        match=r"config\.json was written under settings schema 1, this coreecg reads "
        r"schema 2 \(schema 2 made the PTB-XL protocol the defaults",
    ):
        run_benchmark(load_benchmark_config(str(path), ["probe.features=g"]), str(out), log=quiet)


def test_cli_probe_embed_and_errors(ptbxl_store, encoder, tmp_path, capsys):
    encoder.save(str(tmp_path / "enc"))
    code = main(
        [
            "probe",
            "--encoder",
            str(tmp_path / "enc"),
            "--store",
            str(ptbxl_store),
            "--task",
            TASK,
            "--train",
            "1-7",
            "--val",
            "9",
            "--fraction",
            "0.5",
            "--seeds",
            "0",
            "1",
            "--bootstrap",
            "20",
            "--out",
            str(tmp_path / "probe"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"encoder · probe | {TASK} 50% | val: macro AUROC" in printed
    saved = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert set(saved["aggregate"]["encoder · probe"]) == {f"{TASK} 50%"}

    assert (
        main(["embed", "--encoder", str(tmp_path / "enc"), "--store", str(ptbxl_store), "--out", str(tmp_path / "emb")])
        == 0
    )
    x = np.load(tmp_path / "emb" / "embeddings.npy")
    ids = (tmp_path / "emb" / "records.csv").read_text().splitlines()
    assert x.shape == (Store(str(ptbxl_store)).n_records, encoder.dim) and len(ids) == x.shape[0] + 1
    rows = np.arange(5)
    assert np.allclose(x[:5], record_embeddings(encoder, Store(str(ptbxl_store)), rows), atol=1e-6)
    # bf16 is an approximation of the same vectors: close (cosine), not the fp32 values themselves
    assert (
        main(
            [
                "embed",
                "--encoder",
                str(tmp_path / "enc"),
                "--store",
                str(ptbxl_store),
                "--precision",
                "bf16",
                "--out",
                str(tmp_path / "emb16"),
            ]
        )
        == 0
    )
    x16 = np.load(tmp_path / "emb16" / "embeddings.npy")
    cosine = (x * x16).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(x16, axis=1)
    assert x16.dtype == np.float32 and cosine.min() > 0.999 and not np.allclose(x, x16, atol=1e-5)
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        record_embeddings(encoder, Store(str(ptbxl_store)), rows, precision="fp16")
    # g+time: g, then its time statistics; g+time+change (the probe's default) adds their change over time
    assert (
        main(
            [
                "embed",
                "--encoder",
                str(tmp_path / "enc"),
                "--store",
                str(ptbxl_store),
                "--features",
                "g+time",
                "--out",
                str(tmp_path / "emb-time"),
            ]
        )
        == 0
    )
    with_time = np.load(tmp_path / "emb-time" / "embeddings.npy")
    assert with_time.shape == (x.shape[0], 3 * encoder.dim) and np.allclose(with_time[:, : encoder.dim], x, atol=1e-6)
    assert (with_time[:, encoder.dim : 2 * encoder.dim] >= 0).all()  # a std
    assert (
        main(
            [
                "embed",
                "--encoder",
                str(tmp_path / "enc"),
                "--store",
                str(ptbxl_store),
                "--features",
                "g+time+change",
                "--out",
                str(tmp_path / "emb-change"),
            ]
        )
        == 0
    )
    with_change = np.load(tmp_path / "emb-change" / "embeddings.npy")
    assert with_change.shape == (x.shape[0], 4 * encoder.dim)
    assert np.allclose(with_change[:, : 3 * encoder.dim], with_time, atol=1e-6)
    assert (with_change[:, 3 * encoder.dim :] > 0).any(axis=1).all()  # a mean absolute change, not zero
    assert cli_transfer.FEATURES == EMBEDDING_FEATURES
    assert ProbeSettings().features == cli_transfer.PROBE_FEATURES_DEFAULT
    with pytest.raises(ValueError, match="unknown features 'mean'"):
        record_embeddings(encoder, Store(str(ptbxl_store)), rows, features="mean")

    assert (
        main(
            [
                "probe",
                "--random-init",
                "cpu",
                "--store",
                str(ptbxl_store),
                "--task",
                "nope",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "no label set 'nope'" in capsys.readouterr().err
    assert main(["embed", "--random-init", "cpu", "--wfdb", str(PTBXL), "--out", str(tmp_path / "e2")]) == 2
    assert "--wfdb needs --encoder" in capsys.readouterr().err
    assert (
        main(
            [
                "embed",
                "--encoder",
                str(tmp_path / "enc"),
                "--amplitude-token",
                "--store",
                str(ptbxl_store),
                "--out",
                str(tmp_path / "e3"),
            ]
        )
        == 2
    )
    assert "are for --random-init only" in capsys.readouterr().err
    assert (
        main(
            [
                "probe",
                "--encoder",
                str(tmp_path / "enc"),
                "--amplitude-token",
                "--store",
                str(ptbxl_store),
                "--task",
                TASK,
                "--out",
                str(tmp_path / "p3"),
            ]
        )
        == 2
    )
    assert "are for --random-init only" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nothing"), "--store", str(ptbxl_store), "--out", "x.csv"]) == 2
    assert "no coreecg classifier here" in capsys.readouterr().err


def test_cli_finetune_names_the_classifiers_of_its_own_cells(ptbxl_store, encoder, tmp_path, capsys):
    encoder.save(str(tmp_path / "enc"))
    command = [
        "finetune",
        "--encoder",
        str(tmp_path / "enc"),
        "--store",
        str(ptbxl_store),
        "--task",
        TASK,
        "--train",
        "1-7",
        "--val",
        "9",
        "--fraction",
        "0.5",
        "--bootstrap",
        "20",
        "--out",
        str(tmp_path / "ft"),
        "epochs=1",
        "batch_size=32",
        "min_steps_per_eval=3",
    ]
    assert main([*command, "--seeds", "0", "1"]) == 0
    capsys.readouterr()
    assert main([*command, "--seeds", "1"]) == 0  # reuses the seed-1 cell; seed 0's folder stays on disk
    named = [
        line.split("classifier: ", 1)[1]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("classifier: ")
    ]
    assert len(named) == 1 and Path(named[0]).parent.name.endswith("__f0.5__s1")
    assert (Path(named[0]) / "config.json").is_file()
    assert len(os.listdir(tmp_path / "ft" / "models")) == 2
