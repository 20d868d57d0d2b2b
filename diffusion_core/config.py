"""Frozen configuration dataclasses, saved as JSON beside every checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

# The sampler's fallback rule (`diffusion_core.policy`), named here so configs load without torch.
Fallback = Literal["confident", "leftmost"]
DEFAULT_FALLBACK: Fallback = "leftmost"

ModelKind = Literal["diffusion", "ar", "joint"]
# "auto": draft and verify for joint models, greedy for AR ones, the threshold sampler for
# diffusion ones; "threshold": block sampler with a confidence threshold (sampler.py);
# "greedy": one causal token per forward; "draft": draft and verify (speculative.py).
Decoder = Literal["auto", "threshold", "greedy", "draft"]
DraftSource = Literal["diffusion", "ngram", "both", "none"]
RopeType = Literal["linear", "llama3"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape and conventions of a transformer checkpoint.

    `kind="diffusion"` predicts the clean token at every position (mask logit forced
    to -inf) under a block-causal mask; `kind="ar"` is the same network with a causal
    mask and a next-token head, used as the same-size autoregressive baseline.
    `kind="joint"` is one network that is both (issue 19): a causal path whose rows
    predict the next token, and mask rows that predict their own position's token from
    the causal prefix before their block and their own block (draft-and-verify decoding,
    `diffusion_core.speculative`). Only unshifted diffusion rows are supported for it.
    """

    vocab_size: int = 8192
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: int = 4
    d_ff: int = 704
    rope_theta: float = 10000.0
    rope_scaling_factor: float = 1.0  # linear position interpolation; 1.0 = off
    # "linear": positions / rope_scaling_factor. "llama3": Llama 3.1 frequency-band
    # scaling (factor, low/high frequency factors, original context length).
    rope_type: RopeType = "linear"
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_positions: int = 8192
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    o_bias: bool = False  # bias on the attention output projection (LLaMA attention_bias)
    tie_embeddings: bool = True
    kind: ModelKind = "diffusion"
    # Special token ids the network itself must know about (the rest live in the tokenizer).
    mask_token_id: int = 1
    pad_token_id: int = 0
    # Dream-style checkpoints predict token i+1 at position i even in diffusion mode.
    shifted_logits: bool = False
    # Family tag of the weights (own, qwen2/dream, qwen3, llama/llada); loaders read it.
    family: str = "own"
    # Qwen3: RMSNorm over each head's queries and keys before rotary (QK-norm), and a head
    # size that need not be d_model / n_heads (0: it is).
    qk_norm: bool = False
    head_dim_override: int = 0
    # Block-causal checkpoints (issue 21: dllm a2d BD3LM, Fast-dLLM v2, SDAR): the block
    # size the network was trained with (the sampler's natural default; 0 = none, e.g. a
    # bidirectional model or one of ours trained on several), and whether the training
    # attention was block-causal, which makes the block KV cache exact rather than an
    # approximation of full bidirectional attention.
    trained_block_size: int = 0
    block_causal: bool = False

    def __post_init__(self) -> None:
        if self.trained_block_size < 0:
            raise ValueError(f"trained_block_size must be >= 0, got {self.trained_block_size}")
        if self.head_dim_override < 0:
            raise ValueError(f"head_dim_override must be >= 0, got {self.head_dim_override}")
        if not self.head_dim_override and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.kind not in get_args(ModelKind):
            raise ValueError(f"kind must be one of {get_args(ModelKind)}, got {self.kind!r}")
        if self.kind == "joint" and self.shifted_logits:
            raise ValueError("kind='joint' predicts a mask row's own token: shifted_logits must be false")
        if self.rope_type not in ("linear", "llama3"):
            raise ValueError(f"rope_type must be 'linear' or 'llama3', got {self.rope_type!r}")
        if self.rope_scaling_factor <= 0:
            raise ValueError(f"rope_scaling_factor must be > 0, got {self.rope_scaling_factor}")
        if self.rope_type == "llama3" and self.rope_high_freq_factor <= self.rope_low_freq_factor:
            raise ValueError("llama3 rope scaling needs rope_high_freq_factor > rope_low_freq_factor")

    @property
    def has_causal_path(self) -> bool:
        """True when the network's clean rows predict the next token (AR and joint models)."""
        return self.kind in ("ar", "joint")

    @property
    def has_mask_path(self) -> bool:
        """True when the network denoises mask tokens (diffusion and joint models)."""
        return self.kind in ("diffusion", "joint")

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class SamplerConfig:
    """Decoding policy of the block sampler (Fast-dLLM style confidence threshold)."""

    block_size: int = 32
    threshold: float = 0.9  # commit every masked position whose confidence passes this
    max_tokens: int = 64
    max_steps_per_block: int = 0  # 0 = block_size (one token per step in the worst case)
    # which position a step commits when none reaches the threshold: "leftmost" or
    # "confident" (see diffusion_core.policy)
    fallback: Fallback = DEFAULT_FALLBACK
    # Latency budget of one infill in ms, tokenizing and encoding included; past it the
    # answer is what is decided so far (`sampler.sample_blocks`, deadline). 0 = none.
    budget_ms: float = 0.0
    # Token healing: back the prefix up to its last clean token boundary and let the model
    # rewrite the cut piece (diffusion_core.healing); matters for mid-word completions.
    heal: bool = True
    decoder: Decoder = "auto"
    # draft and verify (diffusion_core.speculative): mask rows per forward (used by the
    # "diffusion" and "both" sources), most draft tokens verified per forward, where drafts
    # come from. Document n-grams are the default: on the shipped joint model up to 5 draft
    # tokens gave 2.54 tokens per forward and 1.78x greedy tokens/s (3 tokens: 2.24, 1.64x),
    # mask-row drafts 1.08-1.12 and 0.69-0.76x (docs/quality.md, "Draft and verify").
    draft_masks: int = 4
    draft_max: int = 5
    draft_source: DraftSource = "ngram"
    # Stop where the probability of the whole output falls below this (`StopRule.min_prob`);
    # 0 = never. The server sets it for suggestions (its `minProbability` setting).
    min_prob: float = 0.0
    repair_steps: int = 6
    repair_threshold: float = 0.5
    repair_slack: float = 0.25  # extra canvas room for insertions, as a share of the block
    # A "repair" that rewrites more than this share of the block's tokens is not a repair:
    # it is reported as no confident proposal (weak models like to delete whole blocks).
    repair_max_change: float = 0.5

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.block_size > 512:
            raise ValueError(f"block_size must be in 1..512, got {self.block_size}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.fallback not in get_args(Fallback):
            raise ValueError(f"fallback must be one of {get_args(Fallback)}, got {self.fallback!r}")
        if self.budget_ms < 0:
            raise ValueError(f"budget_ms must be >= 0, got {self.budget_ms}")
        if self.decoder not in get_args(Decoder):
            raise ValueError(f"decoder must be one of {get_args(Decoder)}, got {self.decoder!r}")
        if self.draft_source not in get_args(DraftSource):
            raise ValueError(f"draft_source must be one of {get_args(DraftSource)}, got {self.draft_source!r}")
        if not 0 <= self.draft_masks <= 64 or not 0 <= self.draft_max <= 64:
            raise ValueError("draft_masks and draft_max must be in 0..64")
        if not 0.0 <= self.min_prob <= 1.0:
            raise ValueError(f"min_prob must be in [0, 1], got {self.min_prob}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0.0 <= self.repair_threshold <= 1.0:
            raise ValueError(f"repair_threshold must be in [0, 1], got {self.repair_threshold}")
        if self.repair_steps < 1:
            raise ValueError(f"repair_steps must be >= 1, got {self.repair_steps}")

    def decoder_for(self, kind: ModelKind) -> Decoder:
        """The decoder this config runs on a model of `kind` ("auto" resolved); raises
        ValueError for a decoder the model cannot run."""
        if self.decoder == "auto":
            return {"joint": "draft", "ar": "greedy", "diffusion": "threshold"}[kind]
        if self.decoder == "threshold" and kind == "ar":
            raise ValueError("the threshold decoder needs a model with a mask path (diffusion or joint)")
        if self.decoder in ("greedy", "draft") and kind == "diffusion":
            raise ValueError(f"the {self.decoder} decoder needs a model with a causal path (ar or joint)")
        return self.decoder

    def replace(self, **changes: Any) -> SamplerConfig:
        return dataclasses.replace(self, **changes)


def parameter_count(cfg: ModelConfig) -> int:
    """Parameters of the `CodeTransformer` that `cfg` describes (from the config alone)."""
    d, hd, ff = cfg.d_model, cfg.head_dim, cfg.d_ff
    attn = d * cfg.n_heads * hd * 2 + d * cfg.n_kv_heads * hd * 2  # q, o, k, v
    if cfg.qkv_bias:
        attn += (cfg.n_heads + 2 * cfg.n_kv_heads) * hd
    if cfg.o_bias:
        attn += d
    layer = attn + 3 * d * ff + 2 * d + (2 * hd if cfg.qk_norm else 0)
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * d
    return cfg.vocab_size * d + head + cfg.n_layers * layer + d
