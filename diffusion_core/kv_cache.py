"""The explicit key/value cache object passed into and out of the model.

Nothing in the model keeps state between calls: a forward pass reads a `KVCache`
(keys/values of already-encoded tokens) and returns the keys/values of its own input,
which the caller may append with `extend`. Immutable: every operation returns a new
object, so a cache held by a document entry is never changed behind its back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]  # (B, H_kv, T, D) each


@dataclass(frozen=True)
class KVCache:
    keys: tuple[torch.Tensor, ...]  # per layer: (B, H_kv, S, D), rotary already applied
    values: tuple[torch.Tensor, ...]  # per layer: (B, H_kv, S, D)

    @staticmethod
    def empty(
        n_layers: int,
        n_kv_heads: int,
        head_dim: int,
        *,
        batch: int = 1,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> KVCache:
        z = torch.zeros(batch, n_kv_heads, 0, head_dim, dtype=dtype, device=device)
        return KVCache(tuple(z for _ in range(n_layers)), tuple(z for _ in range(n_layers)))

    @property
    def length(self) -> int:
        return 0 if not self.keys else int(self.keys[0].shape[2])

    @property
    def n_layers(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def extend(self, new: list[LayerKV] | tuple[LayerKV, ...]) -> KVCache:
        """Append the per-layer keys/values of newly encoded tokens."""
        if len(new) != len(self.keys):
            raise ValueError(f"expected {len(self.keys)} layers, got {len(new)}")
        keys = tuple(torch.cat([k, nk], dim=2) for k, (nk, _) in zip(self.keys, new, strict=True))
        values = tuple(torch.cat([v, nv], dim=2) for v, (_, nv) in zip(self.values, new, strict=True))
        return KVCache(keys, values)

    def truncate(self, length: int) -> KVCache:
        """The cache of the first `length` tokens (a view, no copy)."""
        if length < 0 or length > self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {length}")
        if length == self.length:
            return self
        return KVCache(
            tuple(k[:, :, :length] for k in self.keys), tuple(v[:, :, :length] for v in self.values)
        )

    def layer(self, i: int) -> LayerKV:
        return self.keys[i], self.values[i]
