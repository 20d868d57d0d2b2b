"""The block KV cache must agree exactly with a full block-causal forward pass."""

import torch

from diffusion_core.masks import block_causal_mask, causal_mask
from diffusion_core.policy import commit_mask
from diffusion_core.sampler import StopRule, encode, sample_blocks


def _ids(tok, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, tok.vocab_size, (n,), generator=g).tolist()


def test_cached_block_logits_equal_full_masked_forward(model64, tok):
    b, n = 8, 29  # the last block is short
    ids = _ids(tok, n)
    pos = torch.arange(n)[None]
    full = model64(torch.tensor([ids]), pos, block_causal_mask(torch.arange(n) // b)).logits[0]
    cache = model64.empty_cache()
    for s in range(0, n, b):
        chunk = torch.tensor([ids[s : s + b]])
        out = model64(chunk, pos[:, s : s + b], None, cache)
        torch.testing.assert_close(out.logits[0], full[s : s + b], rtol=1e-9, atol=1e-9)
        cache = cache.extend(out.kv)
    assert cache.length == n


def test_encode_reuses_prefix_and_matches_fresh_encode(model64, tok):
    b = 8
    ids = _ids(tok, 40)
    fresh = encode(model64, ids, b)
    partial = encode(model64, ids[:27], b)  # ends inside a block: encode cuts back to 24
    resumed = encode(model64, ids, b, partial)
    for k1, k2 in zip(fresh.keys, resumed.keys, strict=True):
        torch.testing.assert_close(k1, k2, rtol=1e-9, atol=1e-9)


def test_ar_cache_matches_causal_forward(ar64, tok):
    ids = _ids(tok, 20)
    pos = torch.arange(20)[None]
    full = ar64(torch.tensor([ids]), pos, causal_mask(20)).logits[0]
    cache = encode(ar64, ids[:12], 8)
    out = ar64(torch.tensor([ids[12:]]), pos[:, 12:], torch.ones(8, 20, dtype=torch.bool).tril(12), cache)
    torch.testing.assert_close(out.logits[0], full[12:], rtol=1e-9, atol=1e-9)


def _uncached_sample(model, ctx, *, block_size, threshold, max_tokens, mask_id, stop):
    """Reference decoder: recompute the whole sequence with the block-causal mask every step."""
    seq = list(ctx)
    n_ctx = len(ctx)
    out = []
    while len(out) < max_tokens:
        start = len(seq)
        block = [mask_id] * block_size
        for step in range(block_size):
            full = seq + block
            n = len(full)
            bid = torch.cat([torch.arange(n_ctx) // block_size,
                             (n_ctx + block_size - 1) // block_size + torch.arange(n - n_ctx) // block_size])
            logits = model(torch.tensor([full]), torch.arange(n)[None], block_causal_mask(bid)).logits[0, start:]
            probs = torch.softmax(logits.float(), -1)
            conf, pred = probs.max(-1)
            commit = commit_mask(torch.tensor(block), conf, pred, mask_id=mask_id, eoi_id=stop.eoi_id,
                                 threshold=threshold, last_step=step == block_size - 1)
            x = torch.where(commit, pred, torch.tensor(block))
            ends = commit & (pred == stop.eoi_id)
            if ends.any():
                first = int(ends.nonzero()[0])
                tail = x[first + 1 :]
                x[first + 1 :] = torch.where(tail == mask_id, torch.full_like(tail, stop.eoi_id), tail)
            block = x.tolist()
            if mask_id not in block:
                break
        kept, stopped = stop.cut(block)
        out.extend(kept)
        if stopped:
            break
        seq += block
    return out[:max_tokens]


def test_cached_sampling_equals_uncached_sampling(model64, tok):
    sp = tok.special
    stop = StopRule(sp.eoi)
    for seed, threshold in [(1, 0.9), (2, 0.3), (3, 0.0)]:
        ctx = [sp.suf, *_ids(tok, 11, seed), sp.pre, *_ids(tok, 13, seed + 10), sp.mid]
        kw = dict(block_size=8, threshold=threshold, max_tokens=24, mask_id=sp.mask, stop=stop)
        cached = sample_blocks(model64, encode(model64, ctx, 8), **kw)
        assert cached.tokens == _uncached_sample(model64, ctx, **kw)
        assert len(cached.tokens) > 0
