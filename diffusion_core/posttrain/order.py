"""Constrained-order distillation (Seed Diffusion, sec. 3.2): fine-tune on the best own orders.

For every source example, K teacher-forced rollouts of the current model give K orders in
which the middle could be unmasked (`trajectories.order_rollouts`). The order whose
ground-truth log-likelihood along the way is highest (the ELBO proxy) is kept; the other
K-1 are rejected. The fine-tuning examples are that order's intermediate states with the
pre-training MDLM weight (`examples.trajectory_examples(..., "elbo")`): the model stops
spending capacity on arbitrary random masks and learns the states it actually visits when
it decodes in its preferred order.
"""

from __future__ import annotations

import torch

from diffusion_core.model import CodeTransformer
from diffusion_core.posttrain.config import PostTrainConfig
from diffusion_core.posttrain.examples import trajectory_examples
from diffusion_core.posttrain.stage import StageBatch
from diffusion_core.posttrain.trajectories import Source, order_rollouts, select_best


def order_batch(
    model: CodeTransformer, sources: list[Source], cfg: PostTrainConfig, generator: torch.Generator, special
) -> StageBatch:
    out = StageBatch([], 0, 0)
    for src in sources:
        trajs = order_rollouts(
            model, src, k=cfg.rollouts, threshold=cfg.order_threshold, temperature=cfg.order_temperature,
            generator=generator, mask_id=special.mask, eoi_id=special.eoi,
        )
        best = select_best(trajs)
        out.kept += 1
        out.rejected += len(trajs) - 1
        out.rollout_steps += best.steps
        out.rollout_tokens += len(src.target)
        out.scores.append(best.score)
        out.examples += trajectory_examples(
            best, cfg.states_per_trajectory, cfg.order_weighting, generator, special.mask, special.eoi, cfg.t_min
        )
    return out
