"""Every pretraining setting, its default, and the named presets (sizes and ablations).

The defaults are the validated method: ``coreecg pretrain --store S --out R`` trains the encoder of
the PTB-XL protocol (docs/ptbxl-protocol.md). Each key is documented in docs/configuration.md (a test
keeps the two in step). Order of precedence: built-in defaults < the objective preset < the YAML file
< ``key=value`` overrides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from coreecg.config import SCHEMA_VERSION, ConfigError, apply_overrides, build, check_schema, deep_merge, read_yaml
from coreecg.dataset import Amplitude
from coreecg.losses import RECONSTRUCTION_TARGETS
from coreecg.masking import MASK_MODES
from coreecg.model import DECODER_PRESETS, ENCODER_PRESETS, DecoderConfig, EncoderConfig


@dataclass
class ModelSection:
    preset: str = "cpu"
    patch: int = 25
    dim: int | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_ratio: float = 4.0
    max_time_patches: int = 512
    decoder_dim: int | None = None
    decoder_depth: int | None = None
    decoder_heads: int | None = None
    projection_hidden: int = 512
    projection_dim: int = 128
    # The encoder gets the record's amplitude as a token of its own (waves stay normalized per record):
    # per-record normalization alone hides absolute voltage (LVH, low QRS voltage).
    amplitude_token: bool = True

    def encoder(self) -> EncoderConfig:
        size = ENCODER_PRESETS[self.preset]
        return EncoderConfig(
            patch=self.patch,
            dim=self.dim or size["dim"],
            depth=self.depth or size["depth"],
            heads=self.heads or size["heads"],
            mlp_ratio=self.mlp_ratio,
            max_time_patches=self.max_time_patches,
            amplitude_token=self.amplitude_token,
        )

    def decoder(self) -> DecoderConfig:
        size = DECODER_PRESETS[self.preset]
        return DecoderConfig(
            dim=self.decoder_dim or size["dim"],
            depth=self.decoder_depth or size["depth"],
            heads=self.decoder_heads or size["heads"],
            mlp_ratio=self.mlp_ratio,
        )


@dataclass
class DataSection:
    store: str | list[str] = ""
    splits: list[str] | None = field(default_factory=lambda: ["train"])
    folds: list[int] | None = None
    crop_seconds: float = 5.0
    # True: both views of a record are cut from one window and differ only in augmentation and mask;
    # False: independent crops, so g must describe the whole record (what the method validated).
    shared_crop: bool = False
    num_workers: int = 0
    # None: each record over its own std (docs/method.md §1); a number: every record over this amplitude in mV,
    # which keeps absolute voltage (HVOLT, LVH) visible to the encoder
    scale_mv: float | None = None
    # with scale_mv, how much of each record's amplitude is kept, on a log scale (see Amplitude); None: 1, all
    amplitude_kept: float | None = None

    def amplitude(self) -> Amplitude:
        return Amplitude.from_options(self.scale_mv, self.amplitude_kept)


@dataclass
class AugmentSection:
    fda: bool = True
    fda_strength: float = 0.5
    fda_drop: float = 0.2
    fda_smooth_hz: float = 5.0  # draws every 5 Hz, interpolated; 0: one per bin (docs/method.md §3 as written)
    fda_phase: float = 1.0  # scales the phase shift; 0 is a gain-only FDA
    time_scale: float = 0.2
    time_noise: float = 0.05
    time_wander: float = 0.1
    # With model.amplitude_token: each view's record std is multiplied by exp(N(0, σ²)), so the token
    # tells the two views of a record apart from others only coarsely (an exact shared value is a
    # shortcut for InfoNCE). 0: no jitter.
    amplitude_jitter: float = 0.2


@dataclass
class MaskSection:
    mode: str = "stdm"
    time_ratio: float = 0.5
    lead_probability: float = 0.4
    ratio: float = 0.6


@dataclass
class ObjectiveSection:
    preset: str = "core"
    contrastive: bool = True
    reconstruct: bool = True
    align: bool = True
    lambda_con: float = 0.5
    temperature: float = 0.1
    target: str = "patch"  # what the decoder reconstructs (losses.RECONSTRUCTION_TARGETS)
    target_eps: float = 0.1


@dataclass
class TrainSection:
    steps: int = 3000
    batch_size: int = 64
    accumulate: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 200
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    clip_grad: float = 1.0
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    threads: int = 0
    log_every: int = 10
    checkpoint_every: int = 250
    progress: bool = True


@dataclass
class ProbeSection:
    label_set: str | None = None
    splits: list[str] = field(default_factory=lambda: ["val"])
    eval_every: int = 500
    max_records: int = 1000
    lr: float = 1e-3


@dataclass
class PretrainConfig:
    schema: int = SCHEMA_VERSION  # written with every run; see coreecg.config.check_schema
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    mask: MaskSection = field(default_factory=MaskSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    train: TrainSection = field(default_factory=TrainSection)
    probe: ProbeSection = field(default_factory=ProbeSection)

    @property
    def stores(self) -> list[str]:
        return [self.data.store] if isinstance(self.data.store, str) else list(self.data.store)


# The ablations of docs/method.md §5, as changes to the defaults. A key set in the file still wins.
OBJECTIVE_PRESETS: dict[str, dict] = {
    "core": {},
    "no-fda": {"augment": {"fda": False}},
    "no-stdm": {"mask": {"mode": "per_lead"}},
    "no-align": {"objective": {"align": False}},
    "recon-only": {"objective": {"contrastive": False, "align": False}},
    "contrastive-only": {"objective": {"reconstruct": False, "align": False}, "mask": {"mode": "none"}},
}
PRECISIONS = ("auto", "fp32", "bf16")


def _problems(config: PretrainConfig) -> list[str]:
    """Every bad value, so a user fixes them all in one go."""
    m, d, a, k, o, t, p = (
        config.model,
        config.data,
        config.augment,
        config.mask,
        config.objective,
        config.train,
        config.probe,
    )
    out = []

    def need(ok: bool, text: str) -> None:
        if not ok:
            out.append(text)

    for section in (m, d, a, k, o, t, p):  # inf and NaN pass every "> 0" check below; no setting means them
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                out.append(
                    f"{type(section).__name__.removesuffix('Section').lower()}.{f.name} must be finite, got {value}"
                )
    need(m.preset in ENCODER_PRESETS, f"model.preset {m.preset!r} is not one of {', '.join(ENCODER_PRESETS)}")
    need(m.patch > 0, f"model.patch must be positive, got {m.patch}")
    for key in ("dim", "depth", "heads", "decoder_dim", "decoder_depth", "decoder_heads"):
        value = getattr(m, key)
        need(value is None or value > 0, f"model.{key} must be positive, got {value}")
    if m.preset in ENCODER_PRESETS:
        for make in (m.encoder, m.decoder):
            try:
                make()
            except ConfigError as error:
                out.append(f"model: {error}")
    need(config.stores != [""] and all(config.stores), "data.store is required (a store folder, or a list)")
    need(d.crop_seconds > 0, f"data.crop_seconds must be positive, got {d.crop_seconds}")
    need(d.num_workers >= 0, f"data.num_workers must be >= 0, got {d.num_workers}")
    try:
        d.amplitude()  # its own checks, shared with saved models and benchmark methods
    except ValueError as error:
        need(False, f"data.{error}")
    need(a.fda_strength >= 0, f"augment.fda_strength must be >= 0, got {a.fda_strength}")
    need(0 <= a.fda_drop <= 1, f"augment.fda_drop must be in [0, 1], got {a.fda_drop}")
    need(a.fda_smooth_hz >= 0, f"augment.fda_smooth_hz must be >= 0, got {a.fda_smooth_hz}")
    need(0 <= a.fda_phase <= 1, f"augment.fda_phase must be in [0, 1], got {a.fda_phase}")
    need(a.amplitude_jitter >= 0, f"augment.amplitude_jitter must be >= 0, got {a.amplitude_jitter}")
    need(k.mode in MASK_MODES, f"mask.mode {k.mode!r} is not one of {', '.join(MASK_MODES)}")
    need(0 <= k.time_ratio < 1, f"mask.time_ratio must be in [0, 1), got {k.time_ratio}")
    need(0 <= k.lead_probability <= 1, f"mask.lead_probability must be in [0, 1], got {k.lead_probability}")
    need(0 <= k.ratio < 1, f"mask.ratio must be in [0, 1), got {k.ratio}")
    need(o.preset in OBJECTIVE_PRESETS, f"objective.preset {o.preset!r} is not one of {', '.join(OBJECTIVE_PRESETS)}")
    need(o.contrastive or o.reconstruct, "objective: at least one of contrastive and reconstruct must be true")
    need(not o.align or (o.contrastive and o.reconstruct), "objective.align needs contrastive and reconstruct")
    need(o.temperature > 0, f"objective.temperature must be positive, got {o.temperature}")
    need(
        o.target in RECONSTRUCTION_TARGETS,
        f"objective.target {o.target!r} is not one of {', '.join(RECONSTRUCTION_TARGETS)}",
    )
    need(o.target_eps > 0, f"objective.target_eps must be positive, got {o.target_eps}")
    need(o.lambda_con >= 0, f"objective.lambda_con must be >= 0, got {o.lambda_con}")
    need(not o.reconstruct or k.mode != "none", "objective.reconstruct needs a mask.mode other than none")
    need(t.steps > 0, f"train.steps must be positive, got {t.steps}")
    need(t.batch_size >= 2, f"train.batch_size must be at least 2 (negatives), got {t.batch_size}")
    need(t.accumulate >= 1, f"train.accumulate must be at least 1, got {t.accumulate}")
    need(t.lr > 0 and 0 <= t.min_lr <= t.lr, f"train.lr ({t.lr}) and min_lr ({t.min_lr}) need 0 <= min_lr <= lr")
    need(0 <= t.warmup_steps <= t.steps, f"train.warmup_steps must be in [0, steps], got {t.warmup_steps}")
    need(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), f"train.betas must be two values in [0, 1): {t.betas}")
    need(t.clip_grad >= 0, f"train.clip_grad must be >= 0 (0 = off), got {t.clip_grad}")
    need(t.precision in PRECISIONS, f"train.precision {t.precision!r} is not one of {', '.join(PRECISIONS)}")
    need(t.log_every > 0 and t.checkpoint_every > 0, "train.log_every and train.checkpoint_every must be positive")
    need(p.eval_every > 0 and p.max_records > 0, "probe.eval_every and probe.max_records must be positive")
    need(p.lr > 0, f"probe.lr must be positive, got {p.lr}")
    return out


def resolve(data: dict) -> PretrainConfig:
    """Defaults < objective preset < ``data``; raises ``ConfigError`` listing every problem."""
    preset = (data.get("objective") or {}).get("preset", "core")
    if preset not in OBJECTIVE_PRESETS:
        raise ConfigError(f"objective.preset {preset!r} is not one of {', '.join(OBJECTIVE_PRESETS)}")
    check_schema(data.get("schema", SCHEMA_VERSION), "this config")
    config = build(PretrainConfig, deep_merge(OBJECTIVE_PRESETS[preset], data))
    problems = _problems(config)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    return config


def load_pretrain_config(path: str | None, overrides: list[str] | None = None) -> PretrainConfig:
    """The config a run uses: a YAML file (or none) plus ``section.key=value`` overrides."""
    data = read_yaml(path) if path else {}
    return resolve(apply_overrides(data, overrides or []))
