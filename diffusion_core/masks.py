"""Attention masks (True = may attend).

Block-causal attention (Block Diffusion, Arriola et al. 2025, "BD3-LM"): every token
sees its own block fully and every earlier block. Blocks are given by a monotone
`block_ids` vector, so a context whose length is not a multiple of the block size can
end in a short block and the generated region can start a fresh one.

Training uses the two-stream layout of BD3-LM: the clean sequence x0 (T tokens) is
followed by noisy copies of the positions that carry loss (M tokens). A noisy token of
block b sees the clean tokens of blocks < b and the noisy tokens of block b, which is
exactly what it sees at inference time, where the clean blocks come from the KV cache.

The joint model (`kind="joint"`, issue 19; the layout of TiDAR, Liu et al. 2025, and of
the AR-initialised block diffusion of Fast-dLLM v2) makes the clean stream strictly
causal and trains it with a next-token loss, so one network is both an autoregressive
model (clean rows) and a block drafter (noisy rows). A noisy block still sees exactly the
clean tokens before its first position, which under a causal clean stream do not depend
on where blocks start: at inference a draft block may begin at any position.
"""

from __future__ import annotations

import torch


def block_causal_mask(block_ids: torch.Tensor) -> torch.Tensor:
    """(T,) monotone block ids -> (T, T) mask: q attends k iff block[k] <= block[q]."""
    return block_ids[None, :] <= block_ids[:, None]


def causal_mask(length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(T, T) lower-triangular mask for the autoregressive variant."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def two_stream_mask(
    block_ids: torch.Tensor, noisy_index: torch.Tensor, *, causal_clean: bool = False
) -> torch.Tensor:
    """Mask for [clean (T) ; noisy (M)] where noisy token a is a copy of position noisy_index[a].

    block_ids: (T,) long, noisy_index: (M,) long -> (T+M, T+M) bool. `causal_clean`: the
    clean stream is causal (joint model) instead of block-causal.
    """
    t = block_ids.numel()
    clean_clean = causal_mask(t, block_ids.device) if causal_clean else block_causal_mask(block_ids)
    nb = block_ids[noisy_index]  # (M,)
    noisy_clean = block_ids[None, :] < nb[:, None]  # (M, T) strictly earlier blocks
    noisy_noisy = nb[None, :] == nb[:, None]  # (M, M) same block, bidirectional
    m = noisy_index.numel()
    top = torch.cat([clean_clean, torch.zeros(t, m, dtype=torch.bool)], dim=1)
    bottom = torch.cat([noisy_clean, noisy_noisy], dim=1)
    return torch.cat([top, bottom], dim=0)
