"""The model behind `check`: a `Repairer` proposes a replacement for one block.

The check logic only sees this protocol, so it runs the same with the real engine
(`EngineRepairer`) and with any other implementation a caller passes (tests plant known
proposals that way). Worker processes receive a picklable factory, not a repairer, and
call it once: each worker loads the model once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Context sent with each block, in characters; the engine windows it further in tokens
# (768 prefix / 256 suffix tokens), this only bounds the tokenisation work per block.
MAX_PREFIX_CHARS = 32_000
MAX_SUFFIX_CHARS = 16_000


@dataclass(frozen=True)
class Proposal:
    text: str  # the block as the model would write it
    confidence: float  # in [0, 1]


class Repairer(Protocol):
    """`fits` and `repair` are required. Optional, used when present:

    - `repair_syntax(prefix, block, suffix, error_at, focus) -> Proposal | None`: a repair
      of a block that does not parse, searched among candidates the parser accepts
      (`lsp_server.syntax_repair`); without it `repair` is asked and its proposal kept
      only if it parses. The caller verifies the result either way.
    - `suspicious(prefix, block, suffix, threshold) -> bool`: a cheap pass; a block it
      does not flag is not sent to `repair`.
    """

    def fits(self, block: str) -> bool:
        """Whether `block` is short enough for one repair job."""
        ...

    def repair(self, prefix: str, block: str, suffix: str) -> Proposal: ...


RepairerFactory = Callable[[], Repairer]  # must be picklable for --jobs > 1


class EngineRepairer:
    """`diffusion_core.engine.Engine.repair` behind the `Repairer` protocol."""

    def __init__(self, engine) -> None:
        from diffusion_core.engine import MAX_REPAIR_TOKENS

        self.engine = engine
        self.max_tokens = MAX_REPAIR_TOKENS

    def fits(self, block: str) -> bool:
        return len(self.engine.tokenizer.encode(block)) <= self.max_tokens

    def repair(self, prefix: str, block: str, suffix: str) -> Proposal:
        out = self.engine.repair(prefix[-MAX_PREFIX_CHARS:], block, suffix[:MAX_SUFFIX_CHARS])
        text = out.text if out.changed else block
        return Proposal(text, float(out.confidence))

    def repair_syntax(self, prefix, block, suffix, error_at, focus) -> Proposal | None:
        from lsp_server.syntax_repair import verified_repair

        res = verified_repair(
            self.engine, prefix[-MAX_PREFIX_CHARS:], block, suffix[:MAX_SUFFIX_CHARS],
            error_at, focus,
        )
        return None if res.text is None else Proposal(res.text, res.confidence)

    def suspicious(self, prefix: str, block: str, suffix: str, threshold: float) -> bool:
        """One forward pass over the block as it is: the engine's repair changes nothing
        unless some canvas position has p(its own token) <= the repair threshold (its first
        step then commits the block unchanged), so only such blocks go to `repair`."""
        from lsp_server.suspect import doubtful

        return doubtful(self.engine, prefix[-MAX_PREFIX_CHARS:], block, suffix[:MAX_SUFFIX_CHARS])


@dataclass(frozen=True)
class EngineRepairerFactory:
    """Loads a model directory (None: the shipped default model) into an EngineRepairer."""

    model_dir: str | None = None
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads in this process; 0 leaves torch's default
    max_change: float | None = None  # SamplerConfig.repair_max_change; None: the default

    def __call__(self) -> EngineRepairer:
        import torch

        from diffusion_core.config import SamplerConfig
        from diffusion_core.engine import Engine

        if self.threads > 0:
            torch.set_num_threads(self.threads)
        sampler = None if self.max_change is None else SamplerConfig(repair_max_change=self.max_change)
        return EngineRepairer(Engine.from_path(self.model_dir, device=self.device, sampler=sampler))
