"""A seeded synthetic 12-lead ECG: a cardiac dipole projected onto the electrodes, with labelled conditions.

The heart is a moving dipole ``d(t)`` in body axes (x: patient's left, y: feet, z: anterior). Each
wave of a beat (P, septal Q, R, S, terminal forces, T, an injury current for ST shifts) is a
Gaussian pulse along its own direction. Electrode potentials are projections ``r_e · d(t)`` plus
electrode noise, and the 12 leads are formed from the electrodes exactly as an ECG machine does
(I = LA − RA, aVR = RA − (LA + LL)/2, V_i − Wilson's terminal), so Einthoven's and Goldberger's
relations hold sample for sample, noise included.

Conditions (multi-label, seeded): rhythm is one of normal sinus rhythm, sinus bradycardia, sinus
tachycardia, atrial fibrillation (irregular RR, no P waves, a fibrillatory baseline); on top,
first-degree AV block (PR > 200 ms), left or right bundle branch block (QRS ≥ 120 ms with the
lead-specific shapes: broad notched R in I/V6 and QS in V1 for LBBB, rsR' in V1 and a wide S in
I/V6 for RBBB), ST elevation or depression, premature ventricular beats. Noise: baseline wander,
powerline, muscle. Amplitudes are in millivolts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CONDITIONS = ("NSR", "SB", "STACH", "AF", "IAVB", "LBBB", "RBBB", "STE", "STD", "PVC")
CONDITION_NAMES = {
    "NSR": "normal sinus rhythm",
    "SB": "sinus bradycardia",
    "STACH": "sinus tachycardia",
    "AF": "atrial fibrillation",
    "IAVB": "first-degree AV block",
    "LBBB": "left bundle branch block",
    "RBBB": "right bundle branch block",
    "STE": "ST elevation",
    "STD": "ST depression",
    "PVC": "premature ventricular complexes",
}
NOISES = ("baseline_wander", "powerline", "muscle")
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


# Electrode directions in body axes. The limb electrodes form Einthoven's triangle in the frontal
# plane (scaled so lead I has unit gain along x); their mean is zero, so Wilson's terminal is zero
# for the dipole part. Precordial electrodes sweep the horizontal plane from right-anterior (V1) to
# left-lateral (V6).
_LIMB = {
    "RA": np.array([-0.5, -np.sqrt(3) / 6, 0.0]),
    "LA": np.array([0.5, -np.sqrt(3) / 6, 0.0]),
    "LL": np.array([0.0, np.sqrt(3) / 3, 0.0]),
}
_PRECORDIAL_ANGLES = {"V1": 115.0, "V2": 95.0, "V3": 75.0, "V4": 55.0, "V5": 30.0, "V6": 0.0}
ELECTRODES = {**_LIMB}
for _name, _angle in _PRECORDIAL_ANGLES.items():
    _rad = np.deg2rad(_angle)
    ELECTRODES[_name] = np.array([np.cos(_rad), 0.15, np.sin(_rad)])
ELECTRODE_NAMES = tuple(ELECTRODES)


def leads_from_electrodes(potentials: dict[str, np.ndarray]) -> np.ndarray:
    """The 12 standard leads (12 × T) from electrode potentials, as the recording machine forms them."""
    ra, la, ll = potentials["RA"], potentials["LA"], potentials["LL"]
    wilson = (ra + la + ll) / 3.0
    limb = [la - ra, ll - ra, ll - la, ra - (la + ll) / 2, la - (ra + ll) / 2, ll - (ra + la) / 2]
    return np.stack(limb + [potentials[v] - wilson for v in _PRECORDIAL_ANGLES])


@dataclass
class Wave:
    """A Gaussian pulse of the dipole: centre (s, from the beat's QRS centre), width (s), amplitude, direction."""

    centre: float
    width: float
    amplitude: float
    direction: np.ndarray


@dataclass
class RecordPlan:
    """What one synthetic record contains: its labels, beats and waves, noise — drawn first, then rendered."""

    labels: list[str]
    noises: list[str]
    beat_times: np.ndarray  # QRS centres, s
    beat_waves: list[list[Wave]]
    heart_rate: float
    af_amplitude: float = 0.0
    extras: dict = field(default_factory=dict)


def _draw_labels(rng: np.random.Generator) -> list[str]:
    rhythm = rng.choice(["NSR", "SB", "STACH", "AF"], p=[0.4, 0.2, 0.2, 0.2])
    labels = [str(rhythm)]
    if rhythm != "AF" and rng.random() < 0.2:
        labels.append("IAVB")
    conduction = rng.choice(["", "LBBB", "RBBB"], p=[0.7, 0.15, 0.15])
    if conduction:
        labels.append(str(conduction))
    st = rng.choice(["", "STE", "STD"], p=[0.7, 0.15, 0.15])
    if st:
        labels.append(str(st))
    if rng.random() < 0.2:
        labels.append("PVC")
    return labels


def _jitter(rng: np.random.Generator, v: np.ndarray, amount: float = 0.15) -> np.ndarray:
    return _unit(*(v + rng.normal(0.0, amount, 3)))


def _ventricular_waves(rng: np.random.Generator, labels: list[str], rr: float, scale: float) -> list[Wave]:
    """QRS, ST and T of a supraventricular beat, shaped by the conduction and ST labels."""
    qt = 0.40 * np.sqrt(rr)  # Bazett
    waves: list[Wave] = []
    if "LBBB" in labels:
        # septum activated from the left: no septal q in I/V6; slow, leftward-posterior, notched R
        main = _jitter(rng, np.array([0.8, 0.25, -0.6]), 0.08)
        waves += [Wave(-0.032, 0.017, 1.1 * scale, main), Wave(0.022, 0.018, 1.2 * scale, main)]
        t_direction = -main  # secondary (discordant) repolarization
        t_amplitude = 0.3 * scale
    else:
        waves += [
            Wave(-0.022, 0.008, 0.25 * scale, _jitter(rng, np.array([-0.5, 0.2, 0.8]))),  # septal, left to right
            Wave(0.0, 0.011, 1.3 * scale, _jitter(rng, np.array([0.6, 0.7, -0.35]), 0.1)),  # free walls
            Wave(0.024, 0.010, 0.35 * scale, _jitter(rng, np.array([-0.3, -0.5, -0.6]))),  # basal
        ]
        t_direction = _jitter(rng, np.array([0.55, 0.75, -0.1]), 0.1)
        t_amplitude = 0.3 * scale
        if "RBBB" in labels:  # slow right-ventricular activation: terminal rightward-anterior forces
            terminal = _jitter(rng, np.array([-0.6, 0.0, 0.8]), 0.08)
            waves.append(Wave(0.07, 0.02, 0.75 * scale, terminal))
            t_direction = _jitter(rng, np.array([0.6, 0.5, -0.6]), 0.05)
    waves.append(Wave(qt - 0.09, 0.045 + 0.02 * np.sqrt(rr), t_amplitude, t_direction))
    if "STE" in labels or "STD" in labels:
        # injury current: a plateau from the J point to the T wave (several overlapping pulses)
        if "STE" in labels:
            direction = _jitter(rng, np.array([0.1, 0.3, 0.95]) if rng.random() < 0.5 else np.array([0.2, 1.0, 0.1]))
        else:
            direction = _jitter(rng, np.array([-0.75, -0.35, -0.55]))
        amplitude = rng.uniform(0.15, 0.3)
        j_point = 0.09 if ("LBBB" in labels or "RBBB" in labels) else 0.05
        for centre in np.linspace(j_point + 0.03, qt - 0.12, 4):
            waves.append(Wave(float(centre), 0.03, amplitude * 0.55, direction))
    return waves


def _pvc_waves(rng: np.random.Generator, rr: float) -> list[Wave]:
    """An ectopic ventricular beat: no P, wide bizarre QRS along a random axis, discordant T."""
    axis = _unit(*rng.normal(0.0, 1.0, 3))
    amplitude = rng.uniform(1.2, 2.0)
    return [
        Wave(-0.03, 0.025, amplitude * 0.8, axis),
        Wave(0.03, 0.03, amplitude * 0.6, _jitter(rng, axis, 0.3)),
        Wave(0.40 * np.sqrt(rr) - 0.05, 0.06, 0.45, -axis),
    ]


def plan_record(rng: np.random.Generator, seconds: float) -> RecordPlan:
    """Draw the labels, the rhythm (beat times) and every beat's waves of one record."""
    labels = _draw_labels(rng)
    rhythm = labels[0]
    heart_rate = {
        "NSR": rng.uniform(60, 100),
        "SB": rng.uniform(40, 57),
        "STACH": rng.uniform(103, 150),
        "AF": rng.uniform(70, 140),
    }[rhythm]
    mean_rr = 60.0 / heart_rate
    scale = rng.uniform(0.7, 1.3)
    pr = rng.uniform(0.23, 0.34) if "IAVB" in labels else rng.uniform(0.12, 0.19)
    p_direction = _jitter(rng, np.array([0.5, 0.85, 0.2]), 0.1)
    resp, mayer = rng.uniform(0.15, 0.35), rng.uniform(0.08, 0.12)
    phases = rng.uniform(0, 2 * np.pi, 2)
    times, waves = [], []
    t = rng.uniform(0.1, 0.6) * mean_rr + 0.2
    pvc_beats = set(rng.choice(np.arange(2, 40), size=rng.integers(1, 4), replace=False)) if "PVC" in labels else set()
    beat = 0
    while t < seconds + 0.5:
        if rhythm == "AF":
            rr = mean_rr * rng.gamma(16.0, 1.0 / 16.0) * (0.75 + 0.5 * rng.random())  # CV about 0.3: irregular
        else:  # heart-rate variability: respiratory and Mayer-wave modulation, a little noise
            rr = mean_rr * (
                1
                + 0.04 * np.sin(2 * np.pi * resp * t + phases[0])
                + 0.02 * np.sin(2 * np.pi * mayer * t + phases[1])
                + rng.normal(0, 0.01)
            )
        if beat in pvc_beats:
            ectopic_t = t - 0.4 * rr  # premature: coupling at about 60 % of the cycle
            if not times or ectopic_t - times[-1] > 0.3:
                times.append(ectopic_t)
                waves.append(_pvc_waves(rng, rr))
                t += rr  # compensatory pause: the next sinus beat keeps its schedule
        times.append(t)
        beat_waves = _ventricular_waves(rng, labels, rr, scale)
        if rhythm != "AF":
            beat_waves.append(Wave(-pr + 0.05, 0.022, rng.uniform(0.1, 0.2), p_direction))
        waves.append(beat_waves)
        t += rr
        beat += 1
    af_amplitude = rng.uniform(0.04, 0.1) if rhythm == "AF" else 0.0
    noises = [name for name in NOISES if rng.random() < 0.4]
    return RecordPlan(labels, noises, np.asarray(times), waves, heart_rate, af_amplitude)


def render_dipole(plan: RecordPlan, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The dipole d(t) (3 × T) of a planned record, fibrillatory atrial activity included."""
    dipole = np.zeros((3, len(t)))
    for centre, beat_waves in zip(plan.beat_times, plan.beat_waves, strict=True):
        for wave in beat_waves:
            middle = centre + wave.centre
            near = np.abs(t - middle) < 6 * wave.width
            if near.any():
                pulse = wave.amplitude * np.exp(-0.5 * ((t[near] - middle) / wave.width) ** 2)
                dipole[:, near] += wave.direction[:, None] * pulse[None, :]
    if plan.af_amplitude:
        direction = _jitter(rng, np.array([-0.3, 0.3, 0.9]), 0.1)
        f = np.zeros_like(t)
        for _ in range(3):
            frequency = rng.uniform(4.0, 9.0)
            drift = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3))
            f += drift * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
        dipole += direction[:, None] * (plan.af_amplitude / 1.5 * f)[None, :]
    return dipole


def electrode_noise(plan: RecordPlan, t: np.ndarray, fs: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-electrode noise: baseline wander (< 0.5 Hz), powerline (50 or 60 Hz), muscle (broadband)."""
    noise = {name: np.zeros_like(t) for name in ELECTRODE_NAMES}
    mains = float(rng.choice([50.0, 60.0]))
    for name in ELECTRODE_NAMES:
        if "baseline_wander" in plan.noises:
            for _ in range(2):
                noise[name] += rng.uniform(0.05, 0.25) * np.sin(
                    2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi)
                )
        if "powerline" in plan.noises:
            noise[name] += rng.uniform(0.01, 0.05) * np.sin(2 * np.pi * mains * t + rng.uniform(0, 2 * np.pi))
        if "muscle" in plan.noises:
            noise[name] += rng.normal(0.0, rng.uniform(0.01, 0.04), len(t))
    return noise


@dataclass
class SyntheticECG:
    signal: np.ndarray  # 12 × T, mV, canonical lead order
    fs: float
    labels: list[str]
    noises: list[str]
    heart_rate: float
    beat_times: np.ndarray
    electrodes: dict[str, np.ndarray]


def synthetic_ecg(seed: int, fs: float = 500.0, seconds: float = 10.0) -> SyntheticECG:
    """One seeded record: the same (seed, fs, seconds) always gives the same ECG."""
    if fs <= 0 or seconds <= 0:
        raise ValueError(f"sampling rate and length must be positive, got fs={fs}, seconds={seconds}")
    rng = np.random.default_rng(seed)
    plan = plan_record(rng, seconds)
    t = np.arange(round(fs * seconds)) / fs
    dipole = render_dipole(plan, t, rng)
    noise = electrode_noise(plan, t, fs, rng)
    electrodes = {name: ELECTRODES[name] @ dipole + noise[name] for name in ELECTRODE_NAMES}
    signal = leads_from_electrodes(electrodes)
    return SyntheticECG(signal, fs, plan.labels, plan.noises, plan.heart_rate, plan.beat_times, electrodes)
