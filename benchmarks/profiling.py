"""`bench speed --profile`: where the time of one infill goes.

Three passes over the same holes:
1. forward hooks time the model's parts (attention, MLP, LM head, embeddings and norms)
   and a wrapped tokenizer times encode/decode; everything else in the wall time is the
   sampler and Python overhead (softmax/argmax over the vocabulary, KV-cache
   concatenation, control flow);
2. cProfile: the Python functions with the most own time;
3. torch.profiler: the operators with the most own CPU (or CUDA) time.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections import defaultdict

import torch

from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Engine


class _TimedTokenizer:
    """Forwards to a tokenizer, adding the time of encode/decode to timers['tokenization']."""

    def __init__(self, inner, timers: dict) -> None:
        self._inner = inner
        self._timers = timers

    def _timed(self, fn, *a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            self._timers["tokenization"] += time.perf_counter() - t0

    def encode(self, *a, **k):
        return self._timed(self._inner.encode, *a, **k)

    def decode(self, *a, **k):
        return self._timed(self._inner.decode, *a, **k)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _bucket_modules(model) -> list[tuple[str, torch.nn.Module]]:
    parts: list[tuple[str, torch.nn.Module]] = [("embeddings+norms", model.embed_tokens),
                                                ("embeddings+norms", model.norm),
                                                ("lm_head", model.lm_head)]
    for layer in model.layers:
        parts += [("attention", layer.self_attn), ("mlp", layer.mlp),
                  ("embeddings+norms", layer.input_layernorm),
                  ("embeddings+norms", layer.post_attention_layernorm)]
    return parts


def _hooked_split(engine: Engine, items, sampler: SamplerConfig, max_tokens: int) -> dict:
    timers: dict[str, float] = defaultdict(float)
    cuda = next(engine.model.parameters()).is_cuda
    starts: dict[int, float] = {}
    handles = []

    def pre(mod, _inp):
        if cuda:
            torch.cuda.synchronize()
        starts[id(mod)] = time.perf_counter()

    def post_for(name):
        def post(mod, _inp, _out):
            if cuda:
                torch.cuda.synchronize()
            timers[name] += time.perf_counter() - starts.pop(id(mod))
        return post

    for name, mod in _bucket_modules(engine.model):
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post_for(name)))
    inner = engine.tokenizer
    engine.tokenizer = _TimedTokenizer(inner, timers)
    try:
        t0 = time.perf_counter()
        for it in items:
            engine.infill(it.prefix, it.suffix, max_tokens=max_tokens, sampler=sampler)
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    finally:
        engine.tokenizer = inner
        for h in handles:
            h.remove()
    parts = dict(timers)
    parts["sampler+python overhead"] = max(0.0, wall - sum(parts.values()))
    order = ("attention", "mlp", "lm_head", "embeddings+norms", "tokenization",
             "sampler+python overhead")
    return {"wall_ms": round(wall * 1000, 2),
            "split_ms": {k: round(parts.get(k, 0.0) * 1000, 2) for k in order},
            "split_share": {k: round(parts.get(k, 0.0) / wall, 4) if wall else 0.0 for k in order}}


def _cprofile(engine: Engine, items, sampler: SamplerConfig, max_tokens: int, top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for it in items:
        engine.infill(it.prefix, it.suffix, max_tokens=max_tokens, sampler=sampler)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def _torch_profile(engine: Engine, items, sampler: SamplerConfig, max_tokens: int, top: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if next(engine.model.parameters()).is_cuda:
        acts.append(ProfilerActivity.CUDA)
    with profile(activities=acts) as prof:
        for it in items:
            engine.infill(it.prefix, it.suffix, max_tokens=max_tokens, sampler=sampler)
    key = "self_cuda_time_total" if len(acts) > 1 else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top)


def profile_engine(engine: Engine, items, sampler: SamplerConfig, max_tokens: int, log,
                   top: int = 15, torch_profiler: bool = True) -> dict:
    """Run the three passes, print their summaries with `log`, return them for the JSON.

    The first torch.profiler session of a process can take 10-30 s to start (Kineto);
    `torch_profiler=False` skips that pass.
    """
    engine.infill(items[0].prefix, items[0].suffix, max_tokens=max_tokens, sampler=sampler)
    split = _hooked_split(engine, items, sampler, max_tokens)
    lines = [f"profile: {len(items)} holes, {split['wall_ms']:.0f} ms wall"]
    for k, ms in split["split_ms"].items():
        lines.append(f"  {k:<26} {ms:10.1f} ms  {100 * split['split_share'][k]:5.1f}%")
    log("\n".join(lines))
    cp = _cprofile(engine, items, sampler, max_tokens, top)
    log("profile: cProfile, top functions by own time\n" + cp)
    tp = None
    if torch_profiler:
        tp = _torch_profile(engine, items, sampler, max_tokens, top)
        log("profile: torch.profiler, top operators by own time\n" + tp)
    return {**split, "cprofile_top": cp, "torch_profiler_top": tp}
