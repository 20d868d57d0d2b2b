"""What one post-training step hands to the optimizer."""

from __future__ import annotations

from dataclasses import dataclass, field

from diffusion_core.data import Example


@dataclass
class StageBatch:
    examples: list[Example]  # fine-tuning examples (masks = trajectory states)
    kept: int  # trajectories trained on
    rejected: int  # trajectories thrown away (not the best of K / not verified)
    rollout_steps: int = 0  # denoising steps of the kept trajectories
    rollout_tokens: int = 0  # middle positions of the kept trajectories
    scores: list[float] = field(default_factory=list)  # kept trajectories' scores (order stage)
