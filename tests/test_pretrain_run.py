"""Pretraining end to end on the real sample store: resume exactness, learning, DDP, torchrun, the saved encoder."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

import coreecg
from coreecg.config import ConfigError, deep_merge
from coreecg.dataset import Amplitude, StoreDataset
from coreecg.distributed import all_reduce_mean, shutdown
from coreecg.pretrain.config import resolve
from coreecg.pretrain.loop import learning_rate, pretrain
from coreecg.pretrain.objective import CoReECG, View, make_views
from coreecg.readers.base import read_wfdb_record
from coreecg.store import Store
from tests.conftest import PTBXL, needs_sample, quiet

# A tiny model for the loop's mechanics. No amplitude token, so the lower-level tests below can pass views
# without each record's std; the tests of the token turn it on (and the CLI tests use the defaults).
SMALL_MODEL = {
    "amplitude_token": False,
    "preset": "cpu",
    "dim": 32,
    "depth": 2,
    "heads": 2,
    "decoder_dim": 32,
    "decoder_depth": 1,
    "decoder_heads": 2,
    "projection_hidden": 64,
    "projection_dim": 32,
}


def small_config(store, **sections) -> dict:
    base = {
        "model": SMALL_MODEL,
        "data": {"store": str(store), "crop_seconds": 2.5, "splits": ["train"]},
        "train": {
            "steps": 6,
            "batch_size": 16,
            "lr": 3e-3,
            "warmup_steps": 2,
            "log_every": 1,
            "checkpoint_every": 100,
            "progress": False,
            "threads": 2,
        },
    }
    return deep_merge(base, sections)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(ptbxl_store, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "full"
    config = small_config(ptbxl_store, probe={"label_set": "superdiagnostic", "eval_every": 3, "max_records": 20})
    pretrain(config, str(run), log=quiet)
    return run


def test_interrupted_run_resumes_exactly(finished_run, ptbxl_store, tmp_path):
    config = small_config(ptbxl_store, probe={"label_set": "superdiagnostic", "eval_every": 3, "max_records": 20})
    run = tmp_path / "interrupted"
    first = pretrain(config, str(run), stop_at=3, log=quiet)
    assert (first.steps, first.finished) == (3, False)
    assert not (run / "summary.json").exists()
    second = pretrain(config, str(run), log=quiet)
    assert (second.steps, second.finished) == (6, True)
    expected = load_file(str(finished_run / "encoder" / "model.safetensors"))
    got = load_file(str(run / "encoder" / "model.safetensors"))
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    by_step = {m["step"]: m for m in _metrics(finished_run)}
    for m in _metrics(run):  # the same losses, learning rates and probe scores at every step
        for key in ("loss", "rec", "con", "lr", "probe_auroc"):
            if key in m:
                assert m[key] == pytest.approx(by_step[m["step"]][key], rel=1e-6), (m["step"], key)


def test_resume_refuses_a_changed_config(finished_run, ptbxl_store):
    config = small_config(
        ptbxl_store,
        probe={"label_set": "superdiagnostic", "eval_every": 3, "max_records": 20},
        objective={"temperature": 0.5},
    )
    with pytest.raises(ValueError, match=r"different config \(objective.temperature: 0.1 -> 0.5\)"):
        pretrain(config, str(finished_run), log=quiet)


def test_run_folder_contents(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["world_size"] == 1
    metrics = _metrics(finished_run)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert 0.0 <= metrics[-1]["probe_auroc"] <= 1.0 and "probe_auroc" in metrics[2]
    assert all(0.0 <= m["data_wait"] < 1.0 for m in metrics)
    assert any(p.name.startswith("events.out.tfevents") for p in (finished_run / "tensorboard").iterdir())
    assert (finished_run / "config.yaml").read_text().startswith("schema: 2\nmodel:")
    umask = os.umask(0)
    os.umask(umask)
    weights = finished_run / "encoder" / "model.safetensors"
    assert weights.stat().st_mode & 0o777 == 0o666 & ~umask  # shareable, not mkstemp's private 0600


def _script(name: str):
    path = Path(__file__).resolve().parents[1] / "experiments" / "alignment" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_alignment_use_swaps_the_decoders_token_and_nothing_else(finished_run, ptbxl_store, tmp_path, monkeypatch):
    alignment_use = _script("alignment_use")
    aligned = alignment_use.reconstruction_by_condition(str(finished_run), "train", batches=2, batch_size=8, seed=0)
    assert (aligned["steps"], aligned["align"]) == (6, True)
    assert all(np.isfinite([aligned[name] for name in alignment_use.CONDITIONS]))
    # After 6 steps the decoder barely reads its token, so two swaps can tie in float32: check instead
    # that each condition hands the decoder its own, distinct g, the first one the other view's.
    calls = []
    original = CoReECG.reconstruction_loss

    def spy(self, view, encoded, lead_mask, cond):
        calls.append((encoded.g, cond))
        return original(self, view, encoded, lead_mask, cond)

    with monkeypatch.context() as patch:
        patch.setattr(CoReECG, "reconstruction_loss", spy)
        alignment_use.reconstruction_by_condition(str(finished_run), "train", 1, 8, 0)
    own_g = calls[0][0]
    other, rolled, mean, zero = (cond for _, cond in calls[:4])  # the first view's four conditions
    assert torch.equal(other, calls[4][0]) and not torch.equal(other, own_g)  # the second view's g
    assert torch.equal(rolled, other.roll(1, dims=0)) and not torch.equal(rolled, other)
    assert torch.allclose(mean, other.mean(0, keepdim=True).expand_as(other)) and not torch.equal(mean, other)
    assert not zero.any() and other.abs().sum() > 0
    assert alignment_use.reconstruction_by_condition(str(finished_run), "train", 2, 8, 0) == aligned  # fixed draws
    # asking for more batches than the part holds averages over the batches it does hold
    segments = len(StoreDataset(Store(str(ptbxl_store)), mode="train", splits=["val"]))
    whole = -(-segments // 16)
    assert alignment_use.reconstruction_by_condition(str(finished_run), "val", 10_000, 16, 0) == (
        alignment_use.reconstruction_by_condition(str(finished_run), "val", whole, 16, 0)
    )
    unaligned_run = tmp_path / "no-align"
    pretrain(small_config(ptbxl_store, objective={"preset": "no-align"}), str(unaligned_run), log=quiet)
    unaligned = alignment_use.reconstruction_by_condition(str(unaligned_run), "train", 2, 8, 0)
    assert unaligned["align"] is False and 0 < unaligned[alignment_use.CONDITIONS[0]] < 10


def test_learning_rate_schedule(ptbxl_store):
    config = resolve(small_config(ptbxl_store, train={"steps": 100, "warmup_steps": 10, "lr": 1e-3, "min_lr": 1e-5}))
    rates = [learning_rate(s, config) for s in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(rates[9:]))
    assert rates[-1] == pytest.approx(1e-5, abs=1e-6)


def test_short_pretraining_on_real_data_lowers_both_losses(ptbxl_store, tmp_path):
    # 120 steps: with smooth FDA the reconstruction loss falls 1-3 % in the first 60 (seed-dependent), 3-3.5 % by 120,
    # at lead drop 0.2 and τ 0.2; at the defaults' 0.4 and 0.1 this tiny model's reconstruction needs longer to move.
    config = small_config(
        ptbxl_store,
        train={"steps": 120, "batch_size": 32, "warmup_steps": 5, "lr": 2e-3},
        mask={"lead_probability": 0.2},
        objective={"temperature": 0.2},
    )
    pretrain(config, str(tmp_path / "learn"), log=quiet)
    metrics = _metrics(tmp_path / "learn")
    for key in ("rec", "con"):
        start = np.mean([m[key] for m in metrics[:5]])
        end = np.mean([m[key] for m in metrics[-5:]])
        assert end < start * 0.98, (key, start, end)


def test_load_encoder_embeds_raw_wfdb_like_the_store(finished_run, ptbxl_store):
    encoder = coreecg.load_encoder(str(finished_run))
    store = Store(str(ptbxl_store))
    row = 0
    record_id = store.records.record_id[row]
    raw, _ = read_wfdb_record(str(PTBXL / store.records.path[row]), record_id, "test")
    embedded = encoder.embed(raw.signal, raw.fs, raw.lead_names)
    # The same record through the store and the evaluation dataset: the same numbers.
    dataset = StoreDataset(store, mode="eval", crop_seconds=2.5, windows=4)
    item = dataset[int(np.flatnonzero(dataset.records == row)[0])]
    with torch.no_grad():
        expected = encoder(item["signal"], item["lead_mask"].expand(4, -1)).mean(0).numpy()
    assert embedded.shape == (32,)
    np.testing.assert_allclose(embedded, expected, atol=1e-4)
    # The 500 Hz file of the same ECG is resampled and filtered into nearly the same embedding.
    hr = PTBXL / str(store.records.path[row]).replace("records100", "records500").replace("_lr", "_hr")
    if hr.with_suffix(".hea").exists():
        raw_hr, _ = read_wfdb_record(str(hr.with_suffix(".hea")), record_id, "test")
        at_500 = encoder.embed(raw_hr.signal, 500.0, raw_hr.lead_names)
        cosine = at_500 @ embedded / np.linalg.norm(at_500) / np.linalg.norm(embedded)
        assert cosine > 0.98
    two_leads = encoder.embed([raw.signal[:2], raw.signal[:2]], raw.fs, raw.lead_names[:2])
    assert two_leads.shape == (2, 32) and np.isfinite(two_leads).all()
    assert not np.allclose(two_leads[0], embedded, atol=1e-3)


def test_amplitude_settings_train_and_are_saved_with_the_encoder(ptbxl_store, tmp_path):
    config = small_config(
        ptbxl_store,
        data={"scale_mv": 0.2, "amplitude_kept": 0.5},
        train={"steps": 2},
        model={**SMALL_MODEL, "amplitude_token": True},
        probe={"label_set": "superdiagnostic", "eval_every": 2, "max_records": 20},
    )
    result = pretrain(config, str(tmp_path / "fixed"), log=quiet)
    assert result.finished and np.isfinite(result.last["loss"])
    loaded = coreecg.load_encoder(str(tmp_path / "fixed"))
    assert loaded.amplitude == Amplitude(0.2, kept=0.5)
    assert loaded.encoder.config.amplitude_token and loaded.encoder.amplitude_embed is not None


def test_amplitude_jitter_draws_each_views_amplitude_on_a_log_scale(ptbxl_store):
    model = {**SMALL_MODEL, "amplitude_token": True}
    config = resolve(small_config(ptbxl_store, model=model, augment={"amplitude_jitter": 0.3}))
    torch.manual_seed(0)
    std = torch.full((4000,), 0.2)
    views = make_views(torch.randn(4000, 12, 500), torch.ones(4000, 12, dtype=torch.bool), config, 100.0, std)
    ratio = torch.log(views[0].record_std / std)
    assert abs(float(ratio.std()) - 0.3) < 0.02 and abs(float(ratio.mean())) < 0.02
    assert not torch.allclose(views[0].record_std, views[1].record_std)
    plain = make_views(
        torch.randn(4, 12, 500),
        torch.ones(4, 12, dtype=torch.bool),
        resolve(small_config(ptbxl_store, model=model, augment={"amplitude_jitter": 0.0})),
        100.0,
        std[:4],
    )
    assert all(torch.equal(v.record_std, std[:4]) for v in plain)
    no_token = resolve(small_config(ptbxl_store, augment={"amplitude_jitter": 0.3}))  # the jitter needs the token
    views = make_views(torch.randn(4, 12, 500), torch.ones(4, 12, dtype=torch.bool), no_token, 100.0, std[:4])
    assert all(torch.equal(v.record_std, std[:4]) for v in views)


def test_shared_crop_cuts_both_views_from_one_window(ptbxl_store):
    """Independent crops differ per view; a shared crop gives both views the same target, augmented apart."""
    signal = torch.arange(1000.0).repeat(8, 12, 1)  # every sample tells its position
    lead_mask = torch.ones(8, 12, dtype=torch.bool)
    torch.manual_seed(0)
    independent = make_views(signal, lead_mask, resolve(small_config(ptbxl_store)), 100.0)
    assert not torch.equal(independent[0].target[:, 0, 0], independent[1].target[:, 0, 0])
    shared = make_views(signal, lead_mask, resolve(small_config(ptbxl_store, data={"shared_crop": True})), 100.0)
    assert torch.equal(shared[0].target, shared[1].target)
    assert shared[0].target.shape[-1] == 250 and len(set(shared[0].target[:, 0, 0].tolist())) > 1
    assert not torch.equal(shared[0].signal, shared[1].signal)  # FDA draws differ per view


def test_raw_target_scores_the_decoder_against_the_unaugmented_crop(ptbxl_store):
    """objective.target=raw: the loss is the plain MSE between prediction and crop on masked patches."""
    store = Store(ptbxl_store)
    signal = torch.from_numpy(np.stack([store.segment(i) for i in range(8)]).astype(np.float32))
    signal = (signal - signal.mean(-1, keepdim=True)) / signal.std()
    lead_mask = torch.ones(8, 12, dtype=torch.bool)
    lead_mask[0, 6:] = False
    config = resolve(small_config(ptbxl_store, objective={"target": "raw"}))
    torch.manual_seed(0)
    model = CoReECG(config).requires_grad_(False)
    views = make_views(signal, lead_mask, config, 100.0)
    view, cond = views[0], model.encoder(views[1].signal, views[1].visible).g
    encoded = model.encoder(view.signal, view.visible)
    loss = float(model.reconstruction_loss(view, encoded, lead_mask, cond))
    prediction = model.decoder(encoded, lead_mask, view.visible.shape[-1], cond).reshape(8, 12, -1, 25)
    crop = view.target.reshape(8, 12, -1, 25)
    masked = ~view.visible & lead_mask[:, :, None]
    assert loss == pytest.approx(float(((prediction - crop) ** 2).mean(-1)[masked].mean()), rel=1e-5)
    model.config = resolve(small_config(ptbxl_store))  # the default, per-patch target, scores something else
    assert float(model.reconstruction_loss(view, encoded, lead_mask, cond)) != pytest.approx(loss, rel=1e-2)
    with pytest.raises(ConfigError, match=r"objective\.target 'pixels' is not one of patch, raw"):
        resolve(small_config(ptbxl_store, objective={"target": "pixels"}))


@needs_sample
def test_pretraining_on_cinc_records_of_mixed_sources(cinc_store, tmp_path):
    """CinC records come from six collections at several rates and lengths; longer ones are several segments."""
    store = Store(str(cinc_store))
    assert store.n_segments > store.n_records
    result = pretrain(
        small_config(cinc_store, data={"splits": None}, train={"steps": 2, "batch_size": 8}),
        str(tmp_path / "cinc"),
        log=quiet,
    )
    assert result.finished and np.isfinite(result.last["loss"])


def test_load_encoder_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no coreecg encoder here"):
        coreecg.load_encoder(str(tmp_path))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fixed_views(config: dict, batch: int) -> tuple[list[View], torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    lead_mask = torch.ones(batch, 12, dtype=torch.bool)
    lead_mask[::3, 6:] = False
    views = []
    for _ in range(2):
        target = torch.randn(batch, 12, 250, generator=g) * lead_mask[..., None]
        signal = target + 0.1 * torch.randn(batch, 12, 250, generator=g) * lead_mask[..., None]
        visible = (torch.rand(batch, 12, 10, generator=g) < 0.4) & lead_mask[..., None]
        visible[:, 0, 0] = True
        views.append(View(signal, target, visible))
    return views, lead_mask


def _ddp_worker(rank: int, world: int, port: int, config: dict, batch: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = CoReECG(resolve(config))
        views, lead_mask = _fixed_views(config, batch * world)
        mine = slice(rank * batch, (rank + 1) * batch)
        local = [View(v.signal[mine], v.target[mine], v.visible[mine]) for v in views]
        ddp = DistributedDataParallel(model)  # kept referenced: its reducer must live through backward
        result = ddp(local, lead_mask[mine])
        result["loss"].backward()
        losses = {k: float(all_reduce_mean(result[k])) for k in ("loss", "rec", "con") if k in result}
        if rank == 0:
            grads = {name: p.grad for name, p in model.named_parameters()}
            torch.save({"losses": losses, "grads": grads}, out)
    finally:
        shutdown()


@pytest.mark.parametrize("preset", ["core", "recon-only"])
def test_ddp_two_processes_equal_one_process_with_twice_the_batch(ptbxl_store, tmp_path, preset):
    config = small_config(ptbxl_store, objective={"preset": preset})
    batch = 6
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_worker, args=(2, _free_port(), config, batch, out), nprocs=2, join=True)
    torch.manual_seed(0)
    model = CoReECG(resolve(config))
    views, lead_mask = _fixed_views(config, 2 * batch)
    result = model(views, lead_mask)
    result["loss"].backward()
    ddp = torch.load(out)
    for key in ddp["losses"]:
        assert ddp["losses"][key] == pytest.approx(float(result[key].detach()), rel=1e-5), key
    for name, p in model.named_parameters():
        if p.grad is None:  # frozen (g without a contrastive loss)
            assert ddp["grads"][name] is None
            continue
        diff = float((ddp["grads"][name] - p.grad).abs().max())
        assert diff <= 1e-4 * float(p.grad.abs().max()) + 1e-7, (name, diff, float(p.grad.abs().max()))


def test_torchrun_with_two_cpu_processes(ptbxl_store, tmp_path):
    run = tmp_path / "torchrun"
    overrides = [
        "model.preset=cpu",
        "model.dim=32",
        "model.depth=1",
        "model.heads=2",
        "model.decoder_dim=32",
        "model.decoder_depth=1",
        "model.decoder_heads=2",
        "data.crop_seconds=2.5",
        "train.steps=3",
        "train.batch_size=8",
        "train.warmup_steps=1",
        "train.progress=false",
        "train.threads=1",
        "train.device=cpu",
    ]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "coreecg",
        "pretrain",
        "--store",
        str(ptbxl_store),
        "--out",
        str(run),
        *overrides,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert coreecg.load_encoder(str(run)).dim == 32
