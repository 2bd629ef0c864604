"""Training state from files nobody vouches for: no code runs from them, training stops on a non-finite loss
without writing bad weights, and Ctrl-C then the same command gives the uninterrupted run's weights."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import coreecg.pretrain.loop as loop_module
from coreecg.cli import main
from coreecg.errors import TrainingError
from coreecg.evaluation.finetune import FinetuneConfig, finetune
from coreecg.evaluation.selection import select
from coreecg.pretrain.config import resolve
from coreecg.pretrain.loop import pretrain
from coreecg.pretrained import load_encoder
from coreecg.state_file import StateFileError, load_state, save_state
from coreecg.store import Store
from tests.conftest import quiet
from tests.test_pretrain_run import small_config

SRC = Path(__file__).resolve().parents[1] / "src"


class _Planted:
    """Unpickling this writes the marker file: the stand-in for any code a crafted pickle can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _plant(path: Path, marker: Path) -> None:
    pickled = path.with_name("planted.pt")  # torch.load reads a *.safetensors name as safetensors
    torch.save({"step": 1, "model": _Planted(marker)}, pickled)
    torch.load(pickled, weights_only=False)  # the file is truly hostile: a pickle loader runs it
    assert marker.exists()
    marker.unlink()
    pickled.rename(path)


@pytest.fixture(scope="module")
def run(ptbxl_store, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "two-steps"
    pretrain(small_config(ptbxl_store, train={"steps": 2}), str(folder), log=quiet)
    return folder


def _pretrain_args(store: Path, out: Path, **train) -> list[str]:
    model = {
        "model.preset": "cpu",
        "model.dim": 32,
        "model.depth": 2,
        "model.heads": 2,
        "model.decoder_dim": 32,
        "model.decoder_depth": 1,
        "model.decoder_heads": 2,
        "model.projection_hidden": 64,
        "model.projection_dim": 32,
    }
    settings = {
        "data.crop_seconds": 2.5,
        "data.splits": "[train]",
        "train.batch_size": 16,
        "train.lr": 3e-3,
        "train.warmup_steps": 2,
        "train.log_every": 1,
        "train.checkpoint_every": 100,
        "train.progress": "false",
        "train.threads": 1,
    }
    settings |= {f"train.{k}": v for k, v in train.items()}
    return ["pretrain", "--store", str(store), "--out", str(out)] + [f"{k}={v}" for k, v in (model | settings).items()]


def test_no_command_runs_code_from_a_planted_pickle(run, ptbxl_store, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    for name in ("config.yaml", "metrics.jsonl"):
        (hostile / name).write_bytes((run / name).read_bytes())
    # A pickle where an earlier coreecg kept its state, and a pickle under the new name.
    _plant(hostile / "checkpoint.pt", marker)
    args = _pretrain_args(ptbxl_store, hostile, steps=2)
    assert main(args) == 2
    assert "checkpoint.pt: a pickled training state" in capsys.readouterr().err
    assert main(["report", str(hostile), "--out", str(tmp_path / "r.html")]) == 2
    assert "never loaded" in capsys.readouterr().err
    (hostile / "checkpoint.pt").unlink()
    _plant(hostile / "checkpoint.safetensors", marker)
    assert main(args) == 2
    assert re.search(r"checkpoint\.safetensors: not a readable coreecg state file", capsys.readouterr().err)
    assert main(["report", str(hostile), "--out", str(tmp_path / "r.html")]) == 2
    store = Store(str(ptbxl_store))
    selection = select(store, "superdiagnostic", train="1-7", val="9")
    encoder = load_encoder(str(run))
    for name in ("finetune-state.pt", "finetune-state.safetensors"):
        out = tmp_path / f"finetune-{name}"
        out.mkdir()
        _plant(out / name, marker)
        with pytest.raises(StateFileError):
            finetune(encoder, store, selection, str(out), FinetuneConfig(device="cpu"), log=quiet)
    assert not marker.exists()


def test_the_source_never_unpickles():
    pattern = re.compile(r"torch\.load\(|pickle\.loads?\(|allow_pickle\s*=\s*True|read_pickle|weights_only\s*=\s*False")
    offenders = [
        f"{p}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_state_files_round_trip_and_refuse_damage(tmp_path):
    state = {
        "step": 3,
        "w": torch.arange(6.0).reshape(2, 3),
        "pairs": {0: (1, 2.5), "k": None},
        "best": float("-inf"),
        "rng": [torch.get_rng_state()],
    }
    path = tmp_path / "state.safetensors"
    save_state(str(path), state)
    back = load_state(str(path))
    assert back["step"] == 3 and torch.equal(back["w"], state["w"]) and back["pairs"] == {0: (1, 2.5), "k": None}
    assert back["best"] == float("-inf") and torch.equal(back["rng"][0], state["rng"][0])
    data = path.read_bytes()
    damages = [
        (data[: len(data) // 2], "not a readable"),
        (b"", "not a readable"),
        (data.replace(b"coreecg-state", b"coreecg-other"), "not a coreecg state file"),
    ]
    for damaged, reason in damages:
        path.write_bytes(damaged)
        with pytest.raises(StateFileError, match=reason):
            load_state(str(path))


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(ptbxl_store, tmp_path, monkeypatch):
    config = small_config(ptbxl_store, train={"steps": 6, "checkpoint_every": 2})
    real = loop_module.make_views
    calls = {"n": 0}

    def poisoned_after_three_steps(signal, *args, **kwargs):
        calls["n"] += 1
        return real(signal * (float("nan") if calls["n"] > 3 else 1.0), *args, **kwargs)

    monkeypatch.setattr(loop_module, "make_views", poisoned_after_three_steps)
    with pytest.raises(TrainingError, match="step 4: the loss is nan"):
        pretrain(config, str(tmp_path / "run"), log=quiet)
    state = load_state(str(tmp_path / "run" / "checkpoint.safetensors"))
    assert state["step"] == 2
    encoder = load_file(str(tmp_path / "run" / "encoder" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in encoder.values())
    trainer = loop_module.Trainer(resolve(small_config(ptbxl_store)), str(tmp_path / "bad"), quiet)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("inf"))  # however weights got there, they are not saved
    with pytest.raises(TrainingError, match="no longer finite; nothing was written"):
        trainer.save()
    assert not (tmp_path / "bad").exists()


def test_ctrl_c_then_the_same_command_gives_the_uninterrupted_weights(ptbxl_store, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    command = [sys.executable, "-m", "coreecg"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(command + _pretrain_args(ptbxl_store, whole, steps=12), capture_output=True, env=env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    process = subprocess.Popen(
        command + _pretrain_args(ptbxl_store, split, steps=12), stderr=subprocess.PIPE, env=env, text=True
    )
    for line in process.stderr:  # interrupt once it is training, mid-run
        if line.startswith("step 3/"):
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert "interrupted after step" in rest
    stopped_at = load_state(str(split / "checkpoint.safetensors"))["step"]
    assert 3 <= stopped_at < 12
    again = subprocess.run(command + _pretrain_args(ptbxl_store, split, steps=12), capture_output=True, env=env)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    expected = load_file(str(whole / "encoder" / "model.safetensors"))
    got = load_file(str(split / "encoder" / "model.safetensors"))
    assert all(torch.equal(expected[k], got[k]) for k in expected)
