"""Generation trajectories: the order in which a block sampler commits the positions of a middle.

A trajectory is stored as one number per position of the padded middle: the block-local
denoising step at which that position was committed (`commit_step`). Blocks are decoded
left to right and every block starts at step 0, so the state of block b before its step s
is "positions with commit_step >= s are still masked". That is all the post-training
stages need: the intermediate states of a trajectory are the masks of their fine-tuning
examples (see `examples.py`).

Two rollouts produce trajectories:

- `order_rollouts` (constrained-order distillation): teacher-forced. The committed tokens
  are the ground truth, the model only chooses *which* positions to commit. Each step
  commits as many positions as the confidence-threshold sampler would (every masked
  position whose confidence passes the threshold, at least one; everything on the last
  allowed step), but picks them by Gumbel-perturbed log-confidence, so K rollouts give K
  different orders. As in the sampler's policy, an <eoi> position can only be committed
  as the leftmost masked position of its block, and it fills the rest of the block. Each position is scored once, at the step it is committed, with the
  log-probability the model gives its ground-truth token in that state; the trajectory's
  score is the sum (a cheap ELBO proxy: the log-likelihood of the data along that order).
  All blocks of a teacher-forced rollout are independent given the ground truth, so they
  advance in parallel in one two-stream forward pass per step, K rollouts in one batch.
- `onpolicy_rollout` (on-policy step reduction): the real sampler (`sample_blocks`), free
  running, with a hook that records each step's newly committed positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffusion_core.corruption import format_infill
from diffusion_core.data import masked_infill_example
from diffusion_core.kv_cache import KVCache
from diffusion_core.model import CodeTransformer
from diffusion_core.sampler import SampleStats, StopRule, encode, sample_blocks


@dataclass(frozen=True)
class Source:
    """One infill problem: context ids, the reference middle and its padded form."""

    context: list[int]  # <suf> suffix <pre> prefix <mid>
    middle: list[int]  # reference middle, no <eoi>
    target: list[int]  # middle + <eoi> padding, whole blocks
    block_size: int

    @classmethod
    def build(cls, prefix: list[int], suffix: list[int], middle: list[int], block_size: int, special) -> Source:
        context, target = format_infill(prefix, suffix, middle, block_size, special)
        return cls(context, list(middle), target, block_size)

    @property
    def n_blocks(self) -> int:
        return len(self.target) // self.block_size


@dataclass
class Trajectory:
    source: Source
    commit_step: torch.Tensor  # (m,) long: block-local step at which each position was committed
    tokens: torch.Tensor  # (m,) long: the token committed at each position
    score: float = 0.0  # order rollouts: sum of ground-truth log-probs at commit time

    @property
    def block_size(self) -> int:
        return self.source.block_size

    @property
    def n_blocks(self) -> int:
        return self.commit_step.numel() // self.block_size

    def block_steps(self) -> torch.Tensor:
        """(n_blocks,) long: denoising steps each block took."""
        return self.commit_step.view(self.n_blocks, self.block_size).max(dim=1).values + 1

    @property
    def steps(self) -> int:
        return int(self.block_steps().sum())

    def tokens_per_step(self) -> list[int]:
        """Positions committed at each step, blocks in order (the <eoi> tail fill included)."""
        out: list[int] = []
        per_block = self.commit_step.view(self.n_blocks, self.block_size)
        for b, n in enumerate(self.block_steps().tolist()):
            out.extend(torch.bincount(per_block[b], minlength=n).tolist())
        return out

    def validate(self) -> None:
        """Raise ValueError unless every position was committed once and no step was empty."""
        m = len(self.source.target)
        if self.commit_step.shape != (m,) or self.tokens.shape != (m,):
            raise ValueError(f"trajectory covers {self.commit_step.numel()} positions, the middle {m}")
        if bool((self.commit_step < 0).any()):
            raise ValueError("some positions were never committed")
        if 0 in self.tokens_per_step():
            raise ValueError("a denoising step committed nothing")


def select_best(trajectories: list[Trajectory]) -> Trajectory:
    """The highest-scoring trajectory (the first one on ties)."""
    if not trajectories:
        raise ValueError("no trajectories to select from")
    return max(trajectories, key=lambda t: t.score)  # max keeps the first maximum


class StateScorer:
    """Log-probs of the middle of `source` in any masked states, the clean stream encoded once.

    The clean stream (context + ground-truth middle) of the two-stream layout attends only
    to itself, so its keys/values are computed once into a `KVCache`; each call runs only
    the K noisy copies of the middle, which see the clean blocks before their own block
    and their own block, exactly as in `data.masked_infill_example`.
    """

    def __init__(self, model: CodeTransformer, source: Source, mask_id: int) -> None:
        device = next(model.parameters()).device
        m = len(source.target)
        ex = masked_infill_example(
            source.context, source.target, source.block_size, torch.zeros(m, dtype=torch.bool),
            torch.zeros(m), mask_id,
        )
        n_clean = ex.ids.numel() - m  # t_ctx + m
        ids, pos, mask = ex.ids.to(device), ex.positions.to(device), ex.mask.to(device)
        with torch.inference_mode():
            out = model(ids[None, :n_clean], pos[None, :n_clean], mask[:n_clean, :n_clean])
        self.model, self.mask_id = model, mask_id
        self.cache = model.empty_cache().extend(out.kv)  # (1, H_kv, t_ctx + m, D) per layer
        self.positions = pos[n_clean:]  # (m,)
        self.mask = mask[n_clean:]  # (m, t_ctx + 2m): noisy rows over [clean ; noisy]
        self.target = torch.tensor(source.target, device=device)  # (m,)

    @torch.inference_mode()
    def __call__(self, masked: torch.Tensor) -> torch.Tensor:
        """masked (K, m) bool -> (K, m, V) float32 log-probs."""
        k = masked.shape[0]
        ids = torch.where(masked, torch.full_like(masked, self.mask_id, dtype=torch.long), self.target)
        cache = KVCache(
            tuple(t.expand(k, -1, -1, -1) for t in self.cache.keys),
            tuple(t.expand(k, -1, -1, -1) for t in self.cache.values),
        )
        logits = self.model(ids, self.positions.expand(k, -1), self.mask, cache).logits.float()
        return torch.log_softmax(logits, dim=-1)  # (K, m, V)


@torch.inference_mode()
def order_rollouts(
    model: CodeTransformer,
    source: Source,
    *,
    k: int,
    threshold: float,
    temperature: float,
    generator: torch.Generator,
    mask_id: int,
    eoi_id: int,
    max_steps_per_block: int = 0,
) -> list[Trajectory]:
    """K teacher-forced trajectories of `source` (see the module docstring)."""
    device = next(model.parameters()).device
    bsz, m = source.block_size, len(source.target)
    nb = m // bsz
    target = torch.tensor(source.target, device=device)  # (m,)
    is_eoi = (target == eoi_id).view(nb, bsz)
    committed = torch.zeros(k, m, dtype=torch.bool, device=device)
    step_of = torch.full((k, m), -1, dtype=torch.long, device=device)
    score = torch.zeros(k, dtype=torch.float64, device=device)
    log_thr = math.log(max(threshold, 1e-30))
    max_steps = max_steps_per_block or bsz
    scorer = StateScorer(model, source, mask_id)
    for s in range(max_steps):
        masked = ~committed  # (K, m)
        if not bool(masked.any()):
            break
        logp = scorer(masked)  # (K, m, V)
        conf = logp.max(dim=-1).values.view(k, nb, bsz)  # log-confidence of the argmax
        gt = logp.gather(-1, target.expand(k, m)[..., None])[..., 0]  # (K, m)
        mb = masked.view(k, nb, bsz)
        # The sampler's policy (diffusion_core.policy): <eoi> is committed only at the
        # leftmost masked position of a block, i.e. the end of the infill is decided last.
        frontier = mb & (mb.cumsum(-1) == 1)  # (K, nb, B) the first masked position
        allowed = mb & (~is_eoi | frontier)
        n = (allowed & (conf >= log_thr)).sum(-1).clamp_min(1) * mb.any(-1)  # (K, nb)
        u = torch.rand(k, nb, bsz, generator=generator, dtype=torch.float64).to(device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-12)))
        key = torch.where(allowed, conf.double() + temperature * gumbel, torch.full_like(gumbel, -math.inf))
        rank = key.argsort(dim=-1, descending=True).argsort(dim=-1)  # (K, nb, B)
        commit = allowed & (rank < n[..., None])
        if s == max_steps - 1:
            commit = mb.clone()  # the last allowed step commits everything left
        # As in the sampler: once an <eoi> is committed, the rest of its block is filled.
        eoi_in = (commit | ~mb) & is_eoi
        commit |= mb & ((eoi_in.cumsum(-1) - eoi_in.long()) > 0)
        commit = commit.view(k, m)
        score += torch.where(commit, gt.double(), torch.zeros_like(score[:, None])).sum(-1)
        step_of[commit] = s
        committed |= commit
    tokens = target.cpu()
    return [
        Trajectory(source, step_of[i].cpu(), tokens.clone(), float(score[i])) for i in range(k)
    ]


@dataclass
class OnPolicyRollout:
    trajectory: Trajectory  # positions of every generated block (the model's own tokens)
    output: list[int]  # what the sampler returned (<eoi> and after removed)
    stats: SampleStats
    verified: bool  # output == reference middle, token for token
    verified_prefix: int = 0  # leading positions of the padded middle equal to the reference


class _StepRecorder:
    """`sample_blocks` hook: turns successive block states into per-position commit steps."""

    def __init__(self, context_len: int, block_size: int, mask_id: int) -> None:
        self.t_ctx, self.bsz, self.mask_id = context_len, block_size, mask_id
        self.steps: list[torch.Tensor] = []  # per block: (B,) long
        self.tokens: list[torch.Tensor] = []
        self._prev: torch.Tensor | None = None
        self._step = 0

    def __call__(self, start: int, block: torch.Tensor) -> None:
        index = (start - self.t_ctx) // self.bsz
        block = block.cpu()
        if index == len(self.steps):  # a new block starts fully masked (the last may be cut short)
            self.steps.append(torch.full((block.numel(),), -1, dtype=torch.long))
            self.tokens.append(torch.full((block.numel(),), self.mask_id, dtype=torch.long))
            self._step = 0
        elif index != len(self.steps) - 1:
            raise RuntimeError(f"sampler visited block {index} out of order")
        prev = self.tokens[-1]
        was_masked = prev == self.mask_id
        if bool((~was_masked & (block != prev)).any()):
            raise RuntimeError("the sampler changed an already committed position")
        new = was_masked & (block != self.mask_id)
        self.steps[-1][new] = self._step
        self.tokens[-1] = block
        self._step += 1


def onpolicy_rollout(
    model: CodeTransformer,
    source: Source,
    *,
    threshold: float,
    max_steps_per_block: int,
    mask_id: int,
    eoi_id: int,
) -> OnPolicyRollout:
    """Run the real block sampler on `source` and record its commit order."""
    bsz = source.block_size
    cache = encode(model, source.context, bsz)
    rec = _StepRecorder(len(source.context), bsz, mask_id)
    res = sample_blocks(
        model, cache, block_size=bsz, threshold=threshold, max_tokens=len(source.target),
        mask_id=mask_id, stop=StopRule(eoi_id), max_steps_per_block=max_steps_per_block, on_step=rec,
    )
    traj = Trajectory(source, torch.cat(rec.steps), torch.cat(rec.tokens))
    verified = res.tokens == source.middle and traj.commit_step.numel() == len(source.target)
    return OnPolicyRollout(traj, res.tokens, res.stats, verified, matching_prefix(traj))


def matching_prefix(traj: Trajectory) -> int:
    """How many leading positions of the padded middle the rollout got right.

    Compared token for token with the reference target (its `<eoi>` padding included), so
    a rollout that wrote the whole middle and stopped right covers every position it visited.
    """
    n = traj.tokens.numel()
    ref = torch.tensor(traj.source.target[:n], dtype=traj.tokens.dtype)  # (n,)
    wrong = (traj.tokens[: ref.numel()] != ref).nonzero()
    return int(wrong[0]) if wrong.numel() else ref.numel()
