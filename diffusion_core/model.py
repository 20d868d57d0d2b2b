"""The transformer shared by the diffusion model and its autoregressive baseline.

Pre-norm decoder blocks with RMSNorm, rotary positions (RoFormer, Su et al. 2021),
grouped-query attention and a SwiGLU MLP (Shazeer 2020): the LLaMA/Qwen2 layout, so
that open checkpoints load into the same code (see `hf_loader`); Qwen3 adds an RMSNorm
over each head's queries and keys (`cfg.qk_norm`) and a head size of its own. Attention is driven
entirely by an explicit boolean mask and an explicit `KVCache`; the module keeps no
state between calls.

Shifted logits (Dream family, `cfg.shifted_logits`): such checkpoints predict token i+1
at position i, so the prediction for position i comes from the final hidden state of
position i-1. `forward` is the ONE place that re-aligns them: it returns logits where row
i is the prediction for token i, like every other model here. For the first row of a
call, position i-1 is the last cached position; its final hidden state cannot be
recovered from keys/values, so shifted models keep one extra cache entry after the
attention layers: keys (B, 1, S, d) = the final (normed) hidden state of every cached
position, values (B, 1, S, 0). It grows, truncates and spills exactly like a layer, and
since a cached position's hidden state depends only on tokens of its own and earlier
blocks, it is the same as in one full block-causal pass. With an empty cache the first
row uses its own hidden state (the convention of Dream's reference sampler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_core.config import ModelConfig
from diffusion_core.kv_cache import KVCache, LayerKV


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rope_inv_freq(cfg: ModelConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """(D/2,) float32 rotary frequencies, with llama3 frequency-band scaling applied.

    Linear scaling is applied to the positions instead (see `rotary_cos_sin`).
    """
    hd = cfg.head_dim
    inv_freq = 1.0 / (
        cfg.rope_theta ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd)
    )
    if cfg.rope_type != "llama3":
        return inv_freq
    # Llama 3.1: keep high frequencies, divide low ones by the factor, interpolate between.
    factor, lo, hi = cfg.rope_scaling_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
    old_len = cfg.rope_original_max_positions
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / lo, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / hi) & (wavelen <= old_len / lo)
    return torch.where(medium, smoothed, scaled)


def rotary_cos_sin(
    positions: torch.Tensor,
    head_dim: int,
    theta: float,
    scaling: float,
    dtype: torch.dtype,
    inv_freq: torch.Tensor | None = None,  # (D/2,); default: plain RoPE frequencies
) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (B, T) -> cos, sin (B, 1, T, D) in the rotate-half convention."""
    if inv_freq is None:
        inv_freq = 1.0 / (
            theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
        )
    freqs = (positions.float() / scaling)[..., None] * inv_freq  # (B, T, D/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (B, T, D)
    return emb.cos()[:, None].to(dtype), emb.sin()[:, None].to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.d_model, cfg.head_dim
        self.q_proj = nn.Linear(d, cfg.n_heads * hd, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_heads * hd, d, bias=cfg.o_bias)
        if cfg.qk_norm:  # Qwen3: one RMSNorm over head_dim, shared by all heads
            self.q_norm = RMSNorm(hd, cfg.norm_eps)
            self.k_norm = RMSNorm(hd, cfg.norm_eps)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, d)
        cos: torch.Tensor,  # (B, 1, T, D)
        sin: torch.Tensor,
        mask: torch.Tensor | None,  # (B, 1, T, S+T) bool or None = attend to everything
        past: LayerKV | None,  # (B, H_kv, S, D) each
        causal: bool = False,  # mask None, no past: plain causal attention (is_causal)
    ) -> tuple[torch.Tensor, LayerKV]:
        b, t, _ = x.shape
        cfg = self.cfg
        q = self.q_proj(x).view(b, t, cfg.n_heads, cfg.head_dim)  # (B, T, H, D)
        k = self.k_proj(x).view(b, t, cfg.n_kv_heads, cfg.head_dim)  # (B, T, Hkv, D)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, T, D), (B, Hkv, T, D)
        v = self.v_proj(x).view(b, t, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        new_kv = (k, v)
        if past is not None and past[0].shape[2] > 0:
            k = torch.cat([past[0], k], dim=2)  # (B, Hkv, S+T, D)
            v = torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=cfg.n_kv_heads != cfg.n_heads
        )  # (B, H, T, D)
        out = out.transpose(1, 2).reshape(b, t, cfg.n_heads * cfg.head_dim)
        return self.o_proj(out), new_kv


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin, mask, past, causal=False):
        h, new_kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, past, causal)
        x = x + h
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, new_kv


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, V), or (N, V) when rows were selected
    # keys/values of the input tokens, one (k, v) per layer; shifted-logit models add one
    # more entry, (final hidden (B, 1, T, d), empty (B, 1, T, 0)): see the module docstring
    kv: list[LayerKV]


class CodeTransformer(nn.Module):
    """One network for both variants; `cfg.kind` only changes masks and the head's meaning."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.apply(self._init)

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def cache_entries(self) -> int:
        """Entries of this model's KVCache: one per layer, plus the hidden-state entry."""
        return self.cfg.n_layers + (1 if self.cfg.shifted_logits else 0)

    def empty_cache(self, batch: int = 1) -> KVCache:
        p = next(self.parameters())
        cache = KVCache.empty(
            self.cfg.n_layers, self.cfg.n_kv_heads, self.cfg.head_dim,
            batch=batch, dtype=p.dtype, device=p.device,
        )
        if not self.cfg.shifted_logits:
            return cache
        hidden = torch.zeros(batch, 1, 0, self.cfg.d_model, dtype=p.dtype, device=p.device)
        none = torch.zeros(batch, 1, 0, 0, dtype=p.dtype, device=p.device)
        return KVCache((*cache.keys, hidden), (*cache.values, none))

    def forward(
        self,
        ids: torch.Tensor,  # (B, T) long
        positions: torch.Tensor,  # (B, T) long, absolute positions for rotary
        mask: torch.Tensor | None = None,  # (B, T, S+T) or (T, S+T) bool; None = see all
        cache: KVCache | None = None,  # S cached tokens
        *,
        select: torch.Tensor | None = None,  # (B, T) bool: only compute logits at these rows
        causal: bool = False,  # instead of a mask: each token sees itself and the ones before
    ) -> ModelOutput:
        if cache is not None and cache.n_layers != self.cache_entries:
            raise ValueError(
                f"cache has {cache.n_layers} entries, this model uses {self.cache_entries}"
                " (use model.empty_cache())"
            )
        if causal and (mask is not None or (cache is not None and cache.length > 0)):
            # SDPA's is_causal aligns the triangle top-left: right only without cached keys
            raise ValueError("causal=True takes no mask and an empty cache")
        x = self.embed_tokens(ids)  # (B, T, d)
        cfg = self.cfg
        linear = cfg.rope_scaling_factor if cfg.rope_type == "linear" else 1.0
        cos, sin = rotary_cos_sin(
            positions, cfg.head_dim, cfg.rope_theta, linear, x.dtype,
            inv_freq=rope_inv_freq(cfg, positions.device),
        )
        if mask is not None:
            mask = mask[:, None] if mask.dim() == 3 else mask[None, None]  # (B|1, 1, T, S+T)
        new_kv: list[LayerKV] = []
        for i, layer in enumerate(self.layers):
            past = cache.layer(i) if cache is not None else None
            x, kv = layer(x, cos, sin, mask, past, causal)
            new_kv.append(kv)
        x = self.norm(x)  # (B, T, d)
        if cfg.shifted_logits:
            x = self._shift(x, cache, new_kv)  # row i now holds the hidden state of i-1
        if select is not None:
            x = x[select]  # (N, d): the LM head is the largest matmul, skip rows without loss
        logits = self.lm_head(x)  # (B, T, V), or (N, V) with `select`
        if cfg.has_mask_path:
            # The clean sequence never contains a mask token (Seed Diffusion, sec. 3.1).
            logits[..., cfg.mask_token_id] = float("-inf")
        return ModelOutput(logits=logits, kv=new_kv)

    def _shift(self, x: torch.Tensor, cache: KVCache | None, new_kv: list[LayerKV]) -> torch.Tensor:
        """The single place of the shifted-logit convention (see the module docstring).

        x: (B, T, d) final hidden states of this call's tokens. Appends their hidden-state
        cache entry to `new_kv` and returns (B, T, d) whose row i is the hidden state of
        position i-1 (the last cached position for row 0).
        """
        b, t, _ = x.shape
        new_kv.append((x[:, None], x.new_zeros(b, 1, t, 0)))  # (B, 1, T, d), (B, 1, T, 0)
        if cache is not None and cache.length > 0:
            prev = cache.keys[-1][:, 0, -1:].to(x.dtype)  # (B, 1, d): last cached position
        else:
            prev = x[:, :1]  # no earlier position: the first row predicts from itself
        return torch.cat([prev, x[:, :-1]], dim=1)  # (B, T, d)
