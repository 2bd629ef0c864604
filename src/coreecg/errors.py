"""Errors of a training run the command line reports in one line (kept free of torch so the CLI starts fast)."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or weights); the last good saved state is kept."""
