"""Seed Diffusion post-training: constrained-order distillation and on-policy step reduction.

- `trajectories`: rollouts that record the order in which positions were committed.
- `examples`: fine-tuning examples whose masks are a trajectory's intermediate states.
- `order`: best-of-K own orders (ELBO proxy), MDLM-weighted fine-tuning.
- `onpolicy`: aggressive sampler rollouts, verified by exact match, fewest steps kept.
- `speed`: tokens per step / exact match on a fixed held-out set.
- `loop`: the shared fine-tuning loop (checkpoint, exact resume, progress, training.json).

See docs/posttraining.md.
"""

from diffusion_core.posttrain.config import STAGES, PostTrainConfig
from diffusion_core.posttrain.loop import posttrain

__all__ = ["STAGES", "PostTrainConfig", "posttrain"]
