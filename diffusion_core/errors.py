"""The core's exceptions and limits that callers name without running a model.

Torch-free, so a caller (the language server answering `initialize`) can import them
before the model and torch load in the background: `diffusion-lsp serve` answers
`initialize` without importing torch (`tests/core/test_boundaries.py`).
"""

from __future__ import annotations

MAX_REPAIR_TOKENS = 384  # longest block one repair job takes (`Engine.repair`'s canvas)


class Cancelled(Exception):  # noqa: N818 - reads as a state, like asyncio.CancelledError
    """The caller's cancellation flag was set between two denoising steps."""


class ModelLoadError(RuntimeError):
    """A model directory is missing, incomplete or does not match its config."""
