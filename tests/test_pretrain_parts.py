"""The pure parts of pretraining: losses, masks, FDA, the encoder's token handling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from coreecg.augment import frequency_dynamic_augmentation, frequency_importance, random_crop
from coreecg.losses import info_nce, masked_mse, normalize_patches, target_statistics
from coreecg.masking import lead_drop, make_mask, per_lead_mask, random_mask, stdm
from coreecg.model import ECGEncoder, EncoderConfig


def reference_info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Written out row by row, as the formula reads."""
    z1 = z1 / z1.norm(dim=1, keepdim=True)
    z2 = z2 / z2.norm(dim=1, keepdim=True)
    total = 0.0
    for a, b in ((z1, z2), (z2, z1)):
        for i in range(len(a)):
            logits = [float(a[i] @ b[j]) / temperature for j in range(len(b))]
            total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    return total / (2 * len(z1))


def test_info_nce_matches_the_plain_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    assert float(info_nce(z1, z2, 0.3)) == pytest.approx(reference_info_nce(z1, z2, 0.3), rel=1e-5)


def test_info_nce_is_low_for_matching_views_and_symmetric():
    z = F.normalize(torch.randn(16, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    matched = float(info_nce(z, z + 0.01 * torch.randn(16, 8), 0.1))
    shuffled = float(info_nce(z, z[torch.randperm(16)], 0.1))
    assert matched < 0.5 < math.log(16) < shuffled
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    assert float(info_nce(a, b, 0.2)) == pytest.approx(float(info_nce(b, a, 0.2)), rel=1e-6)


def test_masked_mse_counts_only_masked_patches():
    prediction = torch.zeros(2, 3, 4)
    target = torch.ones(2, 3, 4)
    target[0, 0] = 5.0  # a huge error on a visible patch must not count
    mask = torch.tensor([[False, True, True], [True, False, False]])
    assert float(masked_mse(prediction, target, mask)) == pytest.approx(1.0)


def test_patch_targets_are_normalized_per_patch():
    patches = torch.randn(3, 10, 25) * 4 + 2
    out = normalize_patches(patches)
    assert torch.allclose(out.mean(-1), torch.zeros(3, 10), atol=1e-5)
    assert torch.allclose(out.std(-1, unbiased=False), torch.ones(3, 10), atol=1e-3)
    assert torch.equal(normalize_patches(torch.zeros(1, 1, 25)), torch.zeros(1, 1, 25))  # padding stays zero


def test_raw_targets_keep_each_patchs_offset_and_gain():
    """An ST segment lifted by 0.3 and a QRS twice as tall: per-patch targets lose both, raw ones keep them."""
    wave = torch.sin(torch.linspace(0, 3, 25))
    patches = torch.stack([wave, wave + 0.3, 2 * wave])[None]  # 1 × 3 × 25
    shape_only = normalize_patches(patches, 1e-6, "patch")
    assert torch.allclose(shape_only[0, 0], shape_only[0, 1], atol=1e-5)
    assert torch.allclose(shape_only[0, 0], shape_only[0, 2], atol=1e-4)
    assert torch.equal(normalize_patches(patches, 0.1, "raw"), patches)
    offset, scale = target_statistics(patches, "patch", 0.1)
    assert torch.allclose(normalize_patches(patches, 0.1) * scale + offset, patches, atol=1e-6)  # invertible
    with pytest.raises(ValueError, match="unknown reconstruction target 'pixel'"):
        target_statistics(patches, "pixel", 0.1)


def _lead_masks(batch: int = 64) -> torch.Tensor:
    mask = torch.ones(batch, 12, dtype=torch.bool)
    mask[::4, 6:] = False  # limb leads only
    mask[1::4, 1:] = False  # lead I only
    return mask


def test_stdm_time_mask_is_shared_by_leads_and_leads_drop_whole():
    torch.manual_seed(0)
    lead_mask = _lead_masks()
    visible = stdm(lead_mask, 20, time_ratio=0.5, lead_probability=0.3)
    assert not visible[~lead_mask].any()  # absent leads never visible
    kept = visible.any(2)  # a lead with any visible patch is not dropped
    assert kept.any(1).all()  # at least one lead kept in every sample
    assert (kept <= lead_mask).all()
    for b in range(len(visible)):
        rows = visible[b][kept[b]]
        assert (rows == rows[0]).all()  # the same time positions in every kept lead
        assert int(rows[0].sum()) == 10  # exactly half of the time positions masked
    dropped_somewhere = (lead_mask & ~kept).sum()
    assert 0.15 < dropped_somewhere / lead_mask.sum() < 0.45  # p = 0.3, minus the rescued leads


def test_lead_drop_keeps_one_lead_even_when_all_would_drop():
    lead_mask = _lead_masks(200)
    dropped = lead_drop(lead_mask, 1.0)
    assert ((lead_mask & ~dropped).sum(1) == 1).all()


def test_baseline_mask_modes():
    torch.manual_seed(1)
    lead_mask = _lead_masks(32)
    n_time = 20
    present = lead_mask.sum(1) * n_time
    visible = random_mask(lead_mask, n_time, ratio=0.75)
    assert torch.equal(visible.sum((1, 2)), present - torch.round(0.75 * present).long())
    visible = per_lead_mask(lead_mask, n_time, ratio=0.6)
    assert (visible.sum(2)[lead_mask] == 8).all() and not visible[~lead_mask].any()
    time_only = make_mask("time", lead_mask, n_time, ratio=0.6, time_ratio=0.5, lead_probability=0.9)
    assert torch.equal(time_only.any(2), lead_mask)  # no lead dropped
    lead_only = make_mask("lead", lead_mask, n_time, ratio=0.6, time_ratio=0.5, lead_probability=0.5)
    assert (lead_only.all(2) == lead_only.any(2)).all()  # a lead is all visible or all masked
    assert torch.equal(
        make_mask("none", lead_mask, n_time, ratio=0, time_ratio=0, lead_probability=0).any(2), lead_mask
    )
    with pytest.raises(ValueError, match="unknown mask mode"):
        make_mask("stripes", lead_mask, n_time, ratio=0, time_ratio=0, lead_probability=0)


def _einthoven_batch(batch: int = 8, length: int = 500) -> torch.Tensor:
    """Signals with a distinct DC per lead where III = II − I and aVF = (II + III) / 2 hold exactly."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 12, length, generator=g).cumsum(-1) * 0.05 + torch.arange(12.0)[None, :, None]
    x[:, 2] = x[:, 1] - x[:, 0]
    x[:, 5] = (x[:, 1] + x[:, 2]) / 2
    return x


def test_fda_keeps_lead_relations_and_dc():
    torch.manual_seed(3)
    x = _einthoven_batch()
    mask = torch.ones(8, 12, dtype=torch.bool)
    out = frequency_dynamic_augmentation(x, mask, strength_max=1.0, drop_rate=0.5)
    assert not torch.allclose(out, x, atol=1e-3)
    assert torch.allclose(out[:, 2], out[:, 1] - out[:, 0], atol=1e-4)
    assert torch.allclose(out[:, 5], (out[:, 1] + out[:, 2]) / 2, atol=1e-4)
    assert torch.allclose(out.mean(-1), x.mean(-1), atol=1e-4)


def test_fda_strength_zero_is_identity_and_absent_leads_stay_zero():
    x = _einthoven_batch()
    mask = torch.ones(8, 12, dtype=torch.bool)
    mask[:, 7:] = False
    x = x * mask[..., None]
    out = frequency_dynamic_augmentation(x, mask, strength_max=0.0, drop_rate=0.5)
    assert torch.allclose(out, x, atol=1e-5)
    out = frequency_dynamic_augmentation(x, mask, strength_max=1.0)
    assert (out[:, 7:] == 0).all()


def test_fda_moves_important_bins_least():
    torch.manual_seed(4)
    t = torch.arange(1000) / 100.0
    dominant = torch.sin(2 * math.pi * 5.0 * t)  # one strong 5 Hz component
    x = (dominant + 0.05 * torch.randn(64, 12, 1000)).float()
    mask = torch.ones(64, 12, dtype=torch.bool)
    out = frequency_dynamic_augmentation(x, mask, strength_max=1.0, strength=torch.ones(64))
    before, after = torch.fft.rfft(x).abs(), torch.fft.rfft(out).abs()
    change = ((after - before).abs() / before.clamp_min(1e-6)).mean((0, 1))
    w = frequency_importance(torch.fft.rfft(x), mask).mean(0)
    peak = int(w.argmax())
    assert peak == 50  # 5 Hz over 10 s
    assert change[peak] < 0.05 < float(change[w < 0.2].median())


def _pulse_batch(batch: int = 16, length: int = 500) -> torch.Tensor:
    """One narrow Gaussian pulse mid-crop in every lead: a QRS-like event with energy up to ~15 Hz."""
    n = torch.arange(length, dtype=torch.float32)
    pulse = torch.exp(-0.5 * ((n - length // 2) / 3.0) ** 2)
    return pulse.expand(batch, 12, length).clone()


def _change_near_pulse(smooth_bins: int, phase_scale: float = 1.0) -> float:
    """Share of the energy FDA adds or removes that lies within ±0.6 s of the pulse (100 Hz)."""
    x = _pulse_batch()
    mask = torch.ones(16, 12, dtype=torch.bool)
    out = frequency_dynamic_augmentation(
        x,
        mask,
        strength_max=1.0,
        drop_rate=0.2,
        strength=torch.ones(16),
        generator=torch.Generator().manual_seed(7),
        smooth_bins=smooth_bins,
        phase_scale=phase_scale,
    )
    change = (out - x).pow(2).sum((0, 1))
    return float(change[250 - 60 : 250 + 60].sum() / change.sum())


def test_smooth_fda_changes_waves_where_they_are():
    """Independent per-bin draws spread a pulse's change over the crop; 5 Hz-smooth draws keep it near."""
    independent, smooth = _change_near_pulse(0), _change_near_pulse(25)  # 25 bins of 0.2 Hz = 5 Hz
    assert independent < 0.5 < 0.9 < smooth


def test_gain_only_fda_moves_no_wave():
    """Without phase shifts the filter is zero-phase: a pulse symmetric about its centre stays symmetric."""
    x = _pulse_batch(length=501)
    mask = torch.ones(16, 12, dtype=torch.bool)
    out = frequency_dynamic_augmentation(
        torch.roll(x, -250, -1), mask, 1.0, 0.2, strength=torch.ones(16), phase_scale=0.0, smooth_bins=5
    )
    centred = torch.roll(out, 250, -1)
    assert not torch.allclose(centred, x, atol=1e-3)
    assert torch.allclose(centred, centred.flip(-1), atol=1e-5)


def test_smooth_draws_are_interpolated_between_control_bins():
    from coreecg.augment import _across_bins, _normal

    g = torch.Generator().manual_seed(8)
    smooth = _across_bins(_normal, 3, 251, 25, "cpu", g, smooth=True)
    held = _across_bins(_normal, 3, 251, 25, "cpu", g, smooth=False)
    assert smooth.shape == held.shape == (3, 251)
    segment = smooth[:, 25:51]
    assert torch.allclose(segment.diff(n=2, dim=1), torch.zeros(3, 24), atol=1e-5)  # linear between knots
    assert (held[:, :25] == held[:, :1]).all() and not (held[:, 25] == held[:, 0]).all()


def test_random_crop_takes_contiguous_windows():
    x = torch.arange(1000.0).expand(4, 12, 1000).clone()
    out = random_crop(x, 300, generator=torch.Generator().manual_seed(5))
    assert out.shape == (4, 12, 300)
    assert (out.diff(dim=-1) == 1).all() and (out[:, :1] == out[:, 1:2]).all()


@pytest.mark.parametrize("group_rows", [False, True])
def test_encoder_ignores_padding_and_invisible_content(group_rows):
    """Rows with fewer visible tokens are padded (or grouped apart); g must not depend on that or on masked data."""
    torch.manual_seed(6)
    encoder = ECGEncoder(EncoderConfig(patch=25, dim=32, depth=2, heads=2)).eval()
    encoder.group_rows = group_rows
    x = torch.randn(2, 12, 250)
    visible = torch.zeros(2, 12, 10, dtype=torch.bool)
    visible[0, :3, :5] = True  # 15 tokens
    visible[1, :, :] = True  # 120 tokens: row 0 is padded to 120
    together = encoder(x, visible).g
    alone = encoder(x[:1], visible[:1]).g
    assert torch.allclose(together[0], alone[0], atol=1e-5)
    scrambled = x.clone()
    scrambled[0, 5:] = torch.randn(7, 250)  # leads that row 0 does not see
    assert torch.allclose(encoder(scrambled, visible).g[0], together[0], atol=1e-5)


def test_grouping_rows_by_visible_count_changes_nothing_but_speed():
    """Grouped (CPU default) and padded encoding: same g, same visible tokens, same gradients."""
    torch.manual_seed(8)
    encoder = ECGEncoder(EncoderConfig(patch=25, dim=32, depth=2, heads=4, drop_path=0.0))
    x = torch.randn(6, 12, 250)
    lead_mask = torch.ones(6, 12, dtype=torch.bool)
    lead_mask[0, 6:] = False
    visible = stdm(lead_mask, 10, 0.5, 0.3, generator=torch.Generator().manual_seed(3))
    assert len(set(visible.sum((1, 2)).tolist())) > 2  # several groups
    results = []
    for group_rows in (True, False):
        encoder.zero_grad()
        encoder.group_rows = group_rows
        out = encoder(x, visible)
        (out.g.square().sum() + (out.tokens * out.valid[..., None]).sum()).backward()
        results.append((out, [p.grad.clone() for p in encoder.parameters()]))
    (grouped, grads_grouped), (padded, grads_padded) = results
    assert torch.equal(grouped.index, padded.index) and torch.equal(grouped.valid, padded.valid)
    assert torch.allclose(grouped.g, padded.g, atol=1e-5)
    assert torch.allclose(grouped.tokens[grouped.valid], padded.tokens[padded.valid], atol=1e-5)
    for a, b in zip(grads_grouped, grads_padded, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_encoder_embed_uses_only_present_leads():
    torch.manual_seed(7)
    encoder = ECGEncoder(EncoderConfig(patch=25, dim=32, depth=1, heads=2)).eval()
    x = torch.randn(1, 12, 250)
    lead_mask = torch.zeros(1, 12, dtype=torch.bool)
    lead_mask[0, :2] = True
    other = x.clone()
    other[0, 2:] = 0.0
    assert torch.allclose(encoder.embed(x, lead_mask), encoder.embed(other, lead_mask), atol=1e-6)
    assert torch.isfinite(encoder.embed(x, lead_mask)).all()


def test_the_amplitude_token_reaches_g_per_row_and_both_row_layouts_agree():
    torch.manual_seed(8)
    encoder = ECGEncoder(EncoderConfig(patch=25, dim=32, depth=2, heads=4, amplitude_token=True)).eval()
    x = torch.randn(6, 12, 250)
    lead_mask = torch.ones(6, 12, dtype=torch.bool)
    lead_mask[0, 6:] = False
    visible = stdm(lead_mask, 10, 0.5, 0.3, generator=torch.Generator().manual_seed(3))
    std = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.5, 0.08])
    with torch.no_grad():
        encoder.group_rows = True
        grouped = encoder(x, visible, std)
        encoder.group_rows = False
        padded = encoder(x, visible, std)
        assert torch.allclose(grouped.g, padded.g, atol=1e-5)
        assert torch.allclose(grouped.tokens[grouped.valid], padded.tokens[padded.valid], atol=1e-5)
        assert grouped.tokens.shape[1] == int(grouped.counts.max())  # the token is no grid position
        louder = std.clone()
        louder[2] *= 3
        moved = encoder(x, visible, louder).g
    changed = (moved - padded.g).abs().amax(1)
    assert changed[2] > 1e-2 and torch.all(changed[[0, 1, 3, 4, 5]] < 1e-6)
    with pytest.raises(ValueError, match="amplitude token: pass each record's std"):
        encoder(x, visible)
    plain = ECGEncoder(EncoderConfig(patch=25, dim=32, depth=1, heads=4)).eval()
    with torch.no_grad():  # an encoder without the token ignores the amplitude
        assert torch.equal(plain(x, visible, std).g, plain(x, visible).g)


@pytest.mark.parametrize("group_rows", [False, True])
def test_time_statistics_follow_the_present_leads_at_each_time_position(group_rows):
    """g+time is g, then the std and max over time of the present leads' mean token, whatever the row layout;
    g+time+change adds the mean absolute step between adjacent time positions of that token."""
    torch.manual_seed(9)
    encoder = ECGEncoder(EncoderConfig(patch=25, dim=16, depth=2, heads=2, amplitude_token=True)).eval()
    encoder.group_rows = group_rows
    x = torch.randn(3, 12, 250)
    lead_mask = torch.ones(3, 12, dtype=torch.bool)
    lead_mask[1, [0, 4, 7]] = False  # row 1 has 9 leads: a different visible count, and absent leads
    std = torch.tensor([0.2, 0.1, 0.4])
    with torch.no_grad():
        features = encoder.embed(x, lead_mask, std, features="g+time")
        with_change = encoder.embed(x, lead_mask, std, features="g+time+change")
        g = encoder.embed(x, lead_mask, std)
        assert features.shape == (3, 48) and torch.equal(features[:, :16], g)
        assert with_change.shape == (3, 64) and torch.equal(with_change[:, :48], features)
        for row in range(3):  # the row alone, its tokens in grid order: lead-major, N = 10 per lead
            leads = lead_mask[row].nonzero().flatten()
            visible = lead_mask[row : row + 1, :, None].expand(-1, -1, 10)
            tokens = encoder(x[row : row + 1], visible, std[row : row + 1]).tokens[0]
            per_time = tokens.view(len(leads), 10, 16).mean(0)  # present leads only (absent: no token)
            expected = torch.cat([per_time.std(0, correction=0), per_time.amax(0)])
            assert torch.allclose(features[row, 16:], expected, atol=1e-5)
            steps = torch.stack([(per_time[t + 1] - per_time[t]).abs() for t in range(9)])
            assert torch.allclose(with_change[row, 48:], steps.mean(0), atol=1e-5)
        one_position = encoder.embed(x[:, :, :25], lead_mask, std, features="g+time+change")
        assert torch.equal(one_position[:, 48:], torch.zeros(3, 16))  # no neighbour, no change (not NaN)
        moved = x.clone()
        moved[0, 3, 25:50] += 2.0  # one patch of one lead changes at one time position
        std_part = encoder.embed(moved, lead_mask, std, features="g+time")[0, 16:32]
    assert (std_part - features[0, 16:32]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="unknown features 'time'"):
        encoder.embed(x, lead_mask, std, features="time")
