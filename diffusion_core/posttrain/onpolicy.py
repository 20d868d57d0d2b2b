"""On-policy step reduction (Seed Diffusion, sec. 3.3), with a reference verifier.

For every source example the real block sampler runs on the current model with aggressive
schedules (low confidence threshold, a cap on steps per block), and a verifier compares
the output with the reference middle:

- `exact`: a rollout passes only if its output is the reference, token for token; of the
  passing rollouts the one with the fewest denoising steps is kept, and a source with none
  is rejected. This is the paper's setting (a verifier of whole outputs).
- `prefix`: the verified part of a rollout is its longest prefix equal to the reference
  (`trajectories.matching_prefix`); the rollout with the longest one is kept (fewest steps
  on ties), and a source is rejected only when no rollout gets even its first token
  right. Only the prefix is trained on: later positions are masked in every state and
  carry no loss (`examples.trajectory_examples(..., verified=n)`). A weak model almost
  never writes a whole middle exactly (0 of 120 rollouts on the shipped model,
  docs/posttraining.md), but it often starts right; this keeps those parts.
- `self` (step distillation): the reference is the answer of the model as it was before
  post-training (a frozen copy, the teacher) with the server's sampler (threshold
  `eval_threshold`, no step cap). The teacher must stay frozen: with the current model as
  its own teacher, answers that got shorter were trained on and got shorter still, and in
  60 steps every answer of the shipped model collapsed to `<eoi>` (docs/posttraining.md);
  the aggressive schedules are checked against it, and the fewest-steps rollout that
  reproduces it is kept (the server-sampler trajectory itself if none does). Sources
  whose answer does not end within the budget are rejected. Nothing here says the
  answer is right: this distils the slow sampler into fewer steps, so what it can buy is
  speed at the model's current quality, which the before/after measurement checks.

The paper minimises the number of steps with a policy-gradient-like objective; here the
surrogate is supervised: cross-entropy toward the verified tokens at every still-masked
position of the kept trajectory's intermediate states, weight 1 per masked position
(`examples.trajectory_examples(..., "uniform")`). Raising the model's confidence in
the right tokens in the early, heavily masked states lets the threshold sampler commit
more of them per step, while training only on verified tokens keeps them correct.
"""

from __future__ import annotations

import torch

from diffusion_core.corruption import padded_middle_length
from diffusion_core.model import CodeTransformer
from diffusion_core.posttrain.config import PostTrainConfig, Verifier
from diffusion_core.posttrain.examples import trajectory_examples
from diffusion_core.posttrain.stage import StageBatch
from diffusion_core.posttrain.trajectories import (
    OnPolicyRollout,
    Source,
    Trajectory,
    onpolicy_rollout,
)


def best_verified(
    model: CodeTransformer,
    src: Source,
    schedules: tuple[tuple[float, int], ...],
    special,
    verifier: Verifier = "exact",
) -> OnPolicyRollout | None:
    """The kept rollout over `schedules` (see the module docstring), or None."""
    best: OnPolicyRollout | None = None

    def key(r: OnPolicyRollout) -> tuple[int, int]:  # larger is better
        return (r.verified_prefix if verifier == "prefix" else 0, -r.trajectory.steps)

    for threshold, cap in schedules:
        r = onpolicy_rollout(
            model, src, threshold=threshold, max_steps_per_block=cap, mask_id=special.mask, eoi_id=special.eoi
        )
        ok = r.verified if verifier == "exact" else r.verified_prefix > 0
        if ok and (best is None or key(r) > key(best)):
            best = r
    return best


def self_reference(
    model: CodeTransformer, src: Source, threshold: float, special
) -> OnPolicyRollout | None:
    """The model's own answer to `src` with the server's sampler, as a rollout of a source
    whose reference middle is that answer; None if the answer does not end in budget."""
    r = onpolicy_rollout(model, src, threshold=threshold, max_steps_per_block=0,
                         mask_id=special.mask, eoi_id=special.eoi)
    if special.eoi not in r.trajectory.tokens.tolist():
        return None
    m = padded_middle_length(len(r.output), src.block_size)
    ref = Source(src.context, list(r.output), [*r.output, *[special.eoi] * (m - len(r.output))], src.block_size)
    traj = Trajectory(ref, r.trajectory.commit_step, r.trajectory.tokens)
    if traj.tokens.tolist() != ref.target:  # the sampler fills the block after <eoi> with <eoi>
        raise RuntimeError("the sampler's answer does not match its own trajectory")
    return OnPolicyRollout(traj, r.output, r.stats, True, len(ref.target))


def onpolicy_batch(
    model: CodeTransformer,
    sources: list[Source],
    cfg: PostTrainConfig,
    generator: torch.Generator,
    special,
    teacher_model: CodeTransformer | None = None,  # "self": the frozen model that answers
) -> StageBatch:
    out = StageBatch([], 0, 0)
    for src in sources:
        if cfg.onpolicy_verifier == "self":
            if teacher_model is None:
                raise ValueError("the self verifier needs the frozen teacher model")
            teacher = self_reference(teacher_model, src, cfg.eval_threshold, special)
            # the student's rollouts, its own server-sampler one included, against the answer
            schedules = (*cfg.onpolicy_schedules, (cfg.eval_threshold, 0))
            student = None if teacher is None else best_verified(
                model, teacher.trajectory.source, schedules, special, "exact")
            best = student if student is not None and student.trajectory.steps <= teacher.trajectory.steps else teacher
            src = best.trajectory.source if best is not None else src
        else:
            best = best_verified(model, src, cfg.onpolicy_schedules, special, cfg.onpolicy_verifier)
        if best is None:
            out.rejected += 1
            continue
        traj = best.trajectory
        prefix = best.verified_prefix if cfg.onpolicy_verifier == "prefix" else None
        out.kept += 1
        if prefix is None:
            out.rollout_steps += traj.steps
            out.rollout_tokens += len(src.target)
        else:  # the steps that committed the verified positions
            out.rollout_steps += prefix_steps(traj, prefix)
            out.rollout_tokens += prefix
        out.examples += trajectory_examples(
            traj, cfg.states_per_trajectory, "uniform", generator, special.mask, special.eoi, cfg.t_min,
            verified=prefix,
        )
    return out


def prefix_steps(traj: Trajectory, prefix: int) -> int:
    """Denoising steps the rollout took until its first `prefix` positions were committed."""
    b = (prefix - 1) // traj.block_size  # the block holding the last verified position
    last = int(traj.commit_step[b * traj.block_size : prefix].max()) + 1  # block-local steps
    return int(traj.block_steps()[:b].sum()) + last
