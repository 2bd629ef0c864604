"""Errors the command line reports in one line, and their wording (kept free of torch so the CLI starts fast)."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or weights); the last good saved state is kept."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (libraries' messages can run to pages), or its type."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
