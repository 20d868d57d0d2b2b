"""On-policy step reduction (Seed Diffusion, sec. 3.3), with exact match as the verifier.

For every source example the real block sampler runs on the current model with aggressive
schedules (low confidence threshold, a cap on steps per block). Rollouts whose output is
the reference middle token for token pass the verifier; of those, the one with the fewest
denoising steps is kept, and a source with no verified rollout is rejected.

The paper minimises the number of steps with a policy-gradient-like objective; here the
surrogate is supervised: cross-entropy toward the verified tokens at every still-masked
position of the kept trajectory's intermediate states, weight 1 per masked position
(`examples.trajectory_examples(..., "uniform")`). Raising the model's confidence in
the right tokens in the early, heavily masked states lets the threshold sampler commit
more of them per step, while training only on verified outputs keeps them correct.
"""

from __future__ import annotations

import torch

from diffusion_core.model import CodeTransformer
from diffusion_core.posttrain.config import PostTrainConfig
from diffusion_core.posttrain.examples import trajectory_examples
from diffusion_core.posttrain.stage import StageBatch
from diffusion_core.posttrain.trajectories import OnPolicyRollout, Source, onpolicy_rollout


def best_verified(
    model: CodeTransformer, src: Source, schedules: tuple[tuple[float, int], ...], special
) -> OnPolicyRollout | None:
    """The verified rollout with the fewest steps over `schedules`, or None."""
    best: OnPolicyRollout | None = None
    for threshold, cap in schedules:
        r = onpolicy_rollout(
            model, src, threshold=threshold, max_steps_per_block=cap, mask_id=special.mask, eoi_id=special.eoi
        )
        if r.verified and (best is None or r.trajectory.steps < best.trajectory.steps):
            best = r
    return best


def onpolicy_batch(
    model: CodeTransformer, sources: list[Source], cfg: PostTrainConfig, generator: torch.Generator, special
) -> StageBatch:
    out = StageBatch([], 0, 0)
    for src in sources:
        best = best_verified(model, src, cfg.onpolicy_schedules, special)
        if best is None:
            out.rejected += 1
            continue
        out.kept += 1
        out.rollout_steps += best.trajectory.steps
        out.rollout_tokens += len(src.target)
        out.examples += trajectory_examples(
            best.trajectory, cfg.states_per_trajectory, "uniform", generator, special.mask, special.eoi, cfg.t_min
        )
    return out
