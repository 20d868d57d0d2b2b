"""The transformer shared by the diffusion model and its autoregressive baseline.

Pre-norm decoder blocks with RMSNorm, rotary positions (RoFormer, Su et al. 2021),
grouped-query attention and a SwiGLU MLP (Shazeer 2020): the LLaMA/Qwen2 layout, so
that open checkpoints load into the same code (see `hf_loader`). Attention is driven
entirely by an explicit boolean mask and an explicit `KVCache`; the module keeps no
state between calls.
"""

from __future__ import annotations

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


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, scaling: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (B, T) -> cos, sin (B, 1, T, D) in the rotate-half convention."""
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
        self.o_proj = nn.Linear(cfg.n_heads * hd, d, bias=False)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, d)
        cos: torch.Tensor,  # (B, 1, T, D)
        sin: torch.Tensor,
        mask: torch.Tensor | None,  # (B, 1, T, S+T) bool or None = attend to everything
        past: LayerKV | None,  # (B, H_kv, S, D) each
    ) -> tuple[torch.Tensor, LayerKV]:
        b, t, _ = x.shape
        cfg = self.cfg
        q = self.q_proj(x).view(b, t, cfg.n_heads, cfg.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(b, t, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(b, t, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        new_kv = (k, v)
        if past is not None and past[0].shape[2] > 0:
            k = torch.cat([past[0], k], dim=2)  # (B, Hkv, S+T, D)
            v = torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, enable_gqa=cfg.n_kv_heads != cfg.n_heads
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

    def forward(self, x, cos, sin, mask, past):
        h, new_kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, past)
        x = x + h
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, new_kv


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, V), or (N, V) when rows were selected
    kv: list[LayerKV]  # keys/values of the input tokens, one (k, v) per layer


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

    def empty_cache(self, batch: int = 1) -> KVCache:
        p = next(self.parameters())
        return KVCache.empty(
            self.cfg.n_layers, self.cfg.n_kv_heads, self.cfg.head_dim,
            batch=batch, dtype=p.dtype, device=p.device,
        )

    def forward(
        self,
        ids: torch.Tensor,  # (B, T) long
        positions: torch.Tensor,  # (B, T) long, absolute positions for rotary
        mask: torch.Tensor | None = None,  # (B, T, S+T) or (T, S+T) bool; None = see all
        cache: KVCache | None = None,  # S cached tokens
        *,
        select: torch.Tensor | None = None,  # (B, T) bool: only compute logits at these rows
    ) -> ModelOutput:
        x = self.embed_tokens(ids)  # (B, T, d)
        cos, sin = rotary_cos_sin(
            positions, self.cfg.head_dim, self.cfg.rope_theta, self.cfg.rope_scaling_factor, x.dtype
        )
        if mask is not None:
            mask = mask[:, None] if mask.dim() == 3 else mask[None, None]  # (B|1, 1, T, S+T)
        new_kv: list[LayerKV] = []
        for i, layer in enumerate(self.layers):
            past = cache.layer(i) if cache is not None else None
            x, kv = layer(x, cos, sin, mask, past)
            new_kv.append(kv)
        x = self.norm(x)
        if select is not None:
            x = x[select]  # (N, d): the LM head is the largest matmul, skip rows without loss
        logits = self.lm_head(x)  # (B, T, V), or (N, V) with `select`
        if self.cfg.kind == "diffusion" and not self.cfg.shifted_logits:
            # The clean sequence never contains a mask token (Seed Diffusion, sec. 3.1).
            logits[..., self.cfg.mask_token_id] = float("-inf")
        return ModelOutput(logits=logits, kv=new_kv)
