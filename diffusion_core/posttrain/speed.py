"""Mean tokens per step and exact match of the block sampler on a fixed set of examples."""

from __future__ import annotations

import random
from dataclasses import dataclass

from diffusion_core.data import ExampleBuilder
from diffusion_core.model import CodeTransformer
from diffusion_core.posttrain.trajectories import Source
from diffusion_core.sampler import StopRule, encode, sample_blocks
from diffusion_core.speculative import DraftConfig, sample_draft_verify


def fixed_sources(builder: ExampleBuilder, n: int, block_size: int) -> list[Source]:
    """n infill problems that depend only on the builder's corpus (not on any run seed)."""
    out = []
    for i in range(n):
        prefix, suffix, middle, _ = builder.infill_source(random.Random(f"posttrain-eval/{i}"))
        out.append(Source.build(prefix, suffix, middle, block_size, builder.sp))
    return out


@dataclass
class SpeedReport:
    examples: int
    steps: int  # denoising steps, all examples
    tokens: int  # generated tokens (what the sampler counts as committed)
    exact: int  # outputs equal to the reference middle

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    def to_dict(self) -> dict:
        return {
            "examples": self.examples,
            "steps": self.steps,
            "tokens": self.tokens,
            "tokens_per_step": round(self.tokens_per_step, 4),
            "exact_match": round(self.exact / self.examples, 4) if self.examples else 0.0,
        }


def measure(model: CodeTransformer, sources: list[Source], threshold: float, special) -> SpeedReport:
    """Decode every source with the threshold sampler (as the server does) and count."""
    was_training = model.training
    model.eval()
    rep = SpeedReport(len(sources), 0, 0, 0)
    for src in sources:
        cache = encode(model, src.context, src.block_size)
        res = sample_blocks(
            model, cache, block_size=src.block_size, threshold=threshold,
            max_tokens=len(src.middle) + src.block_size, mask_id=special.mask, stop=StopRule(special.eoi),
        )
        rep.steps += res.stats.steps
        rep.tokens += res.stats.tokens
        rep.exact += int(res.tokens == src.middle)
    model.train(was_training)
    return rep


def measure_draft(model: CodeTransformer, sources: list[Source], draft: DraftConfig, special) -> SpeedReport:
    """Decode every source with draft and verify (joint models): `steps` counts forward
    passes, so tokens_per_step is tokens per forward."""
    was_training = model.training
    model.eval()
    rep = SpeedReport(len(sources), 0, 0, 0)
    for src in sources:
        cache = encode(model, src.context[:-1], src.block_size)
        res = sample_draft_verify(
            model, cache, src.context[-1], max_tokens=len(src.middle) + src.block_size,
            stop=StopRule(special.eoi), mask_id=special.mask, draft=draft, history=src.context[:-1],
        )
        rep.steps += res.stats.steps
        rep.tokens += res.stats.tokens
        rep.exact += int(res.tokens == src.middle)
    model.train(was_training)
    return rep
