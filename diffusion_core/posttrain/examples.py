"""Fine-tuning examples from trajectories: their intermediate states become the masks.

One example holds one state per block (the two-stream layout lets every block of the
middle carry its own noisy copy, each seeing only the clean blocks before it, exactly as
in pre-training). For a block that took S steps, the states are "before step s" for
s = 0 .. S-1; an example draws a state per block, and the `n_states` examples of a
trajectory draw distinct states (fewer when a block has fewer steps: the extra examples
show that block fully revealed, without loss).

Targets are the reference middle (ground truth, <eoi>-padded) at the still-masked
positions, except the <eoi> padding after the first <eoi>: the sampler never asks the
model for those (an <eoi> is committed only at the frontier, and it fills the rest of
its block), yet the padding stays masked to the very end of every trajectory, so scoring
it made "masked -> <eoi>" most of the fine-tuning targets and collapsed a weak model to
answering <eoi> first (docs/posttraining.md). The first <eoi>, the stop decision, is
scored. Weights:

- "elbo" (constrained-order distillation): MDLM weight 1/t of the state, t = the share of
  the block still masked (clipped at `t_min` like pre-training), so the loss is the
  pre-training ELBO with the random masks replaced by the trajectory's states.
- "uniform" (on-policy step reduction): weight 1 per masked position, so a state counts
  in proportion to how many positions are still masked. Early, heavily masked states are
  exactly the steps where committing more positions at once shortens the trajectory.
"""

from __future__ import annotations

from typing import Literal

import torch

from diffusion_core.data import Example, masked_infill_example
from diffusion_core.posttrain.trajectories import Trajectory

Weighting = Literal["elbo", "uniform"]


def state_plan(steps: torch.Tensor, n_states: int, generator: torch.Generator) -> torch.Tensor:
    """steps (n_blocks,) long, the steps of each block -> (n_states, n_blocks) long: the
    step index of each block in each example.

    A value equal to the block's step count means "fully revealed" (no loss there).
    """
    plan = steps.repeat(n_states, 1)  # (n_states, nb)
    for b, s in enumerate(steps.tolist()):
        chosen = torch.randperm(s, generator=generator)[:n_states]
        plan[: chosen.numel(), b] = chosen
    return plan


def state_weights(masked: torch.Tensor, block_size: int, weighting: Weighting, t_min: float) -> torch.Tensor:
    """masked (m,) bool -> (m,) float loss weights of the masked positions."""
    if weighting == "uniform":
        return torch.ones(masked.numel())
    if weighting != "elbo":
        raise ValueError(f"unknown weighting {weighting!r}")
    t = masked.view(-1, block_size).float().mean(dim=1).clamp_min(t_min)  # (nb,) mask rate
    return (1.0 / t).repeat_interleave(block_size)


def scored_positions(target: list[int], eoi_id: int) -> torch.Tensor:
    """(m,) bool: the positions of the padded middle that carry a loss, all but the
    <eoi> padding after the first <eoi>."""
    t = torch.tensor(target)  # (m,)
    is_eoi = t == eoi_id
    return ~is_eoi | (is_eoi.cumsum(0) == 1)


def trajectory_examples(
    traj: Trajectory,
    n_states: int,
    weighting: Weighting,
    generator: torch.Generator,
    mask_id: int,
    eoi_id: int,
    t_min: float = 0.05,
    verified: int | None = None,
) -> list[Example]:
    """Up to `n_states` examples whose masks are intermediate states of `traj`.

    `verified`: only the first `verified` positions of the middle are known right (the
    on-policy prefix verifier). The rest is masked in every state and carries no loss, and
    a block's states run only up to the last step that committed one of its verified
    positions; blocks past the prefix are left out (fully masked, no loss).
    """
    src = traj.source
    m = len(src.target)
    scored = scored_positions(src.target, eoi_id)  # (m,)
    commit = traj.commit_step
    steps = traj.block_steps()  # (nb,)
    if verified is not None:
        keep = torch.arange(m) < verified  # (m,)
        scored = scored & keep
        commit = torch.full((m,), -1, dtype=torch.long)
        commit[: traj.commit_step.numel()] = traj.commit_step
        commit = torch.where(keep, commit, torch.full_like(commit, m))  # past the prefix: never revealed
        steps = (torch.where(keep, commit, -1).view(-1, src.block_size).max(dim=1).values + 1).clamp_min(0)
    out: list[Example] = []
    for state in state_plan(steps, n_states, generator):
        masked = commit >= state.repeat_interleave(src.block_size)  # (m,)
        if not bool((masked & scored).any()):
            continue
        w = state_weights(masked, src.block_size, weighting, t_min)
        out.append(masked_infill_example(
            src.context, src.target, src.block_size, masked, w, mask_id, scored=scored
        ))
    return out
