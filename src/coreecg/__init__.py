"""coreecg: self-supervised 12-lead ECG representation learning with CoRe-ECG, and its transfer to diagnosis."""

from __future__ import annotations

from coreecg.version import __version__

__all__ = ["__version__", "available_encoders", "load_encoder"]


def load_encoder(path: str, device: str = "cpu"):
    """A pretrained encoder from a folder (or run folder), or a shipped one by name, ready to ``embed`` raw
    ECGs; see coreecg.pretrained."""
    from coreecg.pretrained import load_encoder as load

    return load(path, device)


def available_encoders() -> list[str]:
    """Names of the encoders shipped with coreecg (``load_encoder(NAME)``, ``coreecg embed --encoder NAME``)."""
    from coreecg.pretrained import available_encoders as names

    return names()
