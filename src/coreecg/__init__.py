"""coreecg: self-supervised 12-lead ECG representation learning with CoRe-ECG, and its transfer to diagnosis."""

from __future__ import annotations

__version__ = "0.1.0"
