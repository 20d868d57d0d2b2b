"""Configuration of a post-training run (`diffusion-lsp train --stage order|onpolicy`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from diffusion_core.data import DataConfig
from diffusion_core.posttrain.examples import Weighting

STAGES = ("order", "onpolicy", "draft")
Verifier = Literal["exact", "prefix", "self"]  # on-policy verifier, see posttrain.onpolicy
VERIFIERS: tuple[str, ...] = get_args(Verifier)


def _posttrain_data() -> DataConfig:
    # Post-training rolls the model out on every example, so middles are kept shorter than
    # in pre-training, and the block size is the one the server decodes with.
    return DataConfig(max_middle=64, plain_middle=96, block_sizes=(32,))


@dataclass(frozen=True)
class PostTrainConfig:
    # "order" (constrained-order distillation), "onpolicy" (step reduction), or "draft"
    # (joint models: drafter distillation against the causal verifier)
    stage: str
    data_dirs: tuple[str, ...]
    out_dir: str
    init_from: str | None = None  # model directory; None = the shipped default model
    steps: int = 200
    batch_size: int = 8  # source examples rolled out per optimizer step
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    heldout_fraction: float = 0.02  # must match pre-training, so the held-out files stay unseen
    checkpoint_seconds: float = 300.0
    micro_batch: int = 0  # training examples per forward pass; as TrainConfig.micro_batch
    forbidden: tuple[str, ...] = ()
    data: DataConfig = field(default_factory=_posttrain_data)
    states_per_trajectory: int = 2  # fine-tuning examples drawn from each kept trajectory
    # constrained-order distillation
    rollouts: int = 4  # K trajectories per example; the best-scoring one is kept
    order_threshold: float = 0.9  # how many positions a step commits (as the sampler would)
    order_temperature: float = 1.0  # Gumbel noise on log-confidences; 0 = the greedy order
    # loss weights of the kept states: "elbo" (MDLM 1/t) or "uniform" (1 per masked position)
    order_weighting: Weighting = "elbo"
    # on-policy step reduction: (confidence threshold, max steps per block; 0 = block size),
    # tried in order; the verified rollout with the fewest steps is kept
    onpolicy_schedules: tuple[tuple[float, int], ...] = ((0.5, 8), (0.7, 16))
    # "exact": keep whole outputs equal to the reference; "prefix": keep the longest
    # prefix of a rollout that equals it; "self": the reference is the model's own answer
    # with the server's sampler (step distillation; see posttrain.onpolicy)
    onpolicy_verifier: Verifier = "exact"
    # drafter distillation (joint models, posttrain.draft): greedy tokens rolled out per
    # source, mask rows trained per state, and the draft setting of the before/after figure
    draft_rollout_tokens: int = 48
    draft_block: int = 4
    draft_masks: int = 4
    draft_max: int = 3
    # before/after measurement on a fixed held-out set with the server's default sampler
    eval_examples: int = 32
    eval_block_size: int = 32
    eval_threshold: float = 0.9
    t_min: float = 0.05

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.rollouts < 1 or self.states_per_trajectory < 1 or self.batch_size < 1:
            raise ValueError("rollouts, states_per_trajectory and batch_size must be >= 1")
        if self.order_weighting not in get_args(Weighting):
            raise ValueError(f"order_weighting must be one of {get_args(Weighting)}, got {self.order_weighting!r}")
        if self.onpolicy_verifier not in VERIFIERS:
            raise ValueError(f"onpolicy_verifier must be one of {VERIFIERS}, got {self.onpolicy_verifier!r}")
        if self.draft_block < 1 or self.draft_rollout_tokens < 1:
            raise ValueError("draft_block and draft_rollout_tokens must be >= 1")
        if not self.onpolicy_schedules:
            raise ValueError("onpolicy_schedules is empty")
        for thr, cap in self.onpolicy_schedules:
            if not 0.0 <= thr <= 1.0 or cap < 0:
                raise ValueError(f"bad on-policy schedule ({thr}, {cap})")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data_dirs"] = list(self.data_dirs)
        d["forbidden"] = list(self.forbidden)
        d["onpolicy_schedules"] = [list(s) for s in self.onpolicy_schedules]
        return d
