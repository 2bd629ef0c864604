"""The benchmarks' reference implementation computes what coreecg computes, so their speed ratio is a fair one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from reference import PlainCoReECG, PlainEncoder, ViewSettings, WfdbViewsDataset, batch_views

from coreecg.pretrain.config import resolve
from coreecg.pretrain.objective import CoReECG, make_views
from tests.conftest import PTBXL


def _config():
    return resolve({"data": {"store": "synthetic"}, "model": {"preset": "cpu", "amplitude_token": False}})


def test_reference_gives_coreecg_losses_and_gradients_with_the_same_weights():
    config = _config()
    torch.manual_seed(0)
    model = CoReECG(config)
    reference = PlainCoReECG.like(config)
    reference.load_state_dict(model.state_dict(), strict=True)  # same names, same shapes
    x = torch.randn(6, 12, 1000)
    lead_mask = torch.ones(6, 12, dtype=torch.bool)
    lead_mask[0, 4:] = False  # an absent-lead record: excluded from attention in both
    views = make_views(x, lead_mask, config, 100.0)
    ours = model(views, lead_mask)
    theirs = reference([v.signal for v in views], [v.target for v in views], [v.visible for v in views], lead_mask)
    for key in ("loss", "rec", "con"):
        assert abs(ours[key].item() - theirs[key].item()) < 1e-4, key
    ours["loss"].backward()
    theirs["loss"].backward()
    ours_grads = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        assert torch.allclose(p.grad, ours_grads[name].grad, atol=1e-4), name


def test_reference_encoder_embeds_like_coreecg():
    config = _config()
    torch.manual_seed(1)
    model = CoReECG(config).eval()
    plain = PlainEncoder(config.model.encoder()).eval()
    plain.load_state_dict(model.encoder.state_dict())
    x = torch.randn(3, 12, 500)
    lead_mask = torch.ones(3, 12, dtype=torch.bool)
    visible = lead_mask[:, :, None].expand(-1, -1, 20)
    with torch.no_grad():
        assert torch.allclose(model.encoder.embed(x, lead_mask), plain(x, visible)[1], atol=1e-5)


def test_reference_dataset_reads_wfdb_and_makes_stdm_views():
    config = _config()
    paths = [str(p.with_suffix("")) for p in sorted((PTBXL / "records100").rglob("*.hea"))[:2]]
    item = WfdbViewsDataset(paths, ViewSettings.like(config, 100.0))[0]
    signals, targets, visibles, _ = batch_views({k: v[None] for k, v in item.items()})
    assert signals[0].shape == targets[0].shape == (1, 12, 500) and visibles[0].shape == (1, 12, 20)
    visible = visibles[0][0].numpy()
    seen_time = visible.any(0)
    assert seen_time.sum() == 10  # time ratio 0.5 of 20 positions, shared by every kept lead
    kept = visible.any(1)
    assert np.array_equal(visible[kept], np.repeat(seen_time[None], kept.sum(), 0))
    assert not torch.equal(signals[0], targets[0])  # FDA changed the input, not the target
