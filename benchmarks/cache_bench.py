"""Cold versus warm completion latency with the per-document block KV cache.

A real ~2,000-line Python file (the standard library's difflib.py, read from the running
Python installation) is opened, the cursor is put in the middle, and a line is typed at
the cursor one character at a time. After every keystroke the same completion is timed

* cold: with an empty cache store, so the whole context window is encoded, and
* warm: with the document's store, so only the blocks that changed are encoded,

and the two outputs are checked to be identical. The model has the default size
(`diffusion_core.train.PRESETS['small']`) with random weights and the tiny test tokenizer,
so the benchmark depends on no trained checkpoint.

Random weights are never confident, so they commit one token per denoising step, where a
trained model commits several (Fast-dLLM-style threshold decoding). The main run therefore
caps the steps per block (`--max-steps-per-block`, default 4: about 8 tokens per step for
one 32-token block); a second run with the uncapped sampler (one token per step, the worst
case) is reported as well. The encode time alone (the part the cache removes) is reported
separately and does not depend on the sampler.

`breakdown_median_ms` splits a completion into: building the context ids for the cache
lookup (the server's cut of the text around the cursor, `lsp_server.jobs.context_text`,
then `Engine.infill_context`), the store (lookup + update), encode, sample, and the rest
of `Engine.infill`. `model_speedup_median` is the ratio of the time spent in the model alone.

    python -m dlsp_benchmarks.cache_bench [--out FILE] [--keystrokes N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffusion_core.checkpoint import LoadedModel
from diffusion_core.config import ModelConfig, SamplerConfig
from diffusion_core.engine import Engine, InfillOutput
from diffusion_core.model import CodeTransformer
from diffusion_core.testing import tiny_tokenizer
from diffusion_core.train import PRESETS
from dlsp_cache.store import DocumentCacheStore
from lsp_server.jobs import context_text

URI = "file:///bench/difflib.py"
TYPED = "matches = self.find_longest_match(alo, ahi, blo, bhi)"


def build_engine(preset: str, device: str, seed: int, sampler: SamplerConfig) -> Engine:
    tok = tiny_tokenizer()
    cfg = ModelConfig(
        vocab_size=tok.vocab_size,
        mask_token_id=tok.special.mask,
        pad_token_id=tok.special.pad,
        **PRESETS[preset],
    )
    torch.manual_seed(seed)
    model = CodeTransformer(cfg).to(device).eval()
    loaded = LoadedModel(model, tok, Path("<random>"), f"bench-{preset}-random-seed{seed}")
    return Engine(loaded, sampler)


def source_file() -> tuple[str, str]:
    path = inspect.getsourcefile(difflib) or difflib.__file__
    return path, Path(path).read_text(encoding="utf-8")


def cursor_in_middle(text: str) -> int:
    """The end of the first non-blank line after the middle of the file."""
    lines = text.splitlines(keepends=True)
    i = len(lines) // 2
    while not lines[i].strip():
        i += 1
    return sum(len(line) for line in lines[:i]) + len(lines[i].rstrip("\n"))


def complete(
    engine: Engine, store: DocumentCacheStore, prefix: str, suffix: str, sync
) -> tuple[InfillOutput, float, dict]:
    """One completion as the server's service runs it: lookup, infill, update.

    Returns (out, total ms, breakdown ms: context ids for the lookup, store, encode, sample).
    """
    b = engine.sampler.block_size
    sync()
    t0 = time.perf_counter()
    # the server's cut of the text around the cursor (lsp_server.jobs.context_text), so a
    # 2,000-line file is not tokenized whole on every keystroke
    prefix, suffix = context_text(engine, prefix + suffix, len(prefix), len(prefix))
    ids = engine.infill_context(prefix, suffix)
    t1 = time.perf_counter()
    cache, cache_ids = store.lookup(URI, b)
    t2 = time.perf_counter()
    out = engine.infill(prefix, suffix, cache=cache, cache_ids=cache_ids, context_ids=ids)
    t3 = time.perf_counter()
    store.update(URI, out.context_ids, out.context_cache, b, out.encoded_tokens, out.reused_tokens)
    sync()
    t4 = time.perf_counter()
    sample = sum(out.stats.step_ms)
    parts = {
        "context_ids": (t1 - t0) * 1000,
        "store": ((t2 - t1) + (t4 - t3)) * 1000,
        "encode": out.stats.encode_ms,
        "sample": sample,
        # what remains of infill: mostly tokenizing prefix and suffix again, decoding
        "infill_other": (t3 - t2) * 1000 - out.stats.encode_ms - sample,
    }
    return out, (t4 - t0) * 1000, parts


def summary(xs: list[float]) -> dict:
    s = sorted(xs)
    return {
        "median": round(statistics.median(s), 3),
        "mean": round(statistics.fmean(s), 3),
        "p90": round(s[min(len(s) - 1, int(0.9 * len(s)))], 3),
        "min": round(s[0], 3),
        "max": round(s[-1], 3),
        "n": len(s),
    }


def model_ms(p: dict[str, list[float]]) -> float:
    """Median time in the model (encode + sample) per completion."""
    return statistics.median(e + s for e, s in zip(p["encode"], p["sample"], strict=True))


def run_session(engine: Engine, text: str, cursor: int, keystrokes: int, spill_dir: Path, sync) -> dict:
    b = engine.sampler.block_size
    store = DocumentCacheStore(model_hash=engine.model_hash, spill_dir=spill_dir)
    # Untimed: warm up the kernels, then open the document (its first completion is cold).
    complete(engine, DocumentCacheStore(model_hash=engine.model_hash), text[:cursor], text[cursor:], sync)
    first, _, _ = complete(engine, store, text[:cursor], text[cursor:], sync)
    cold_ms, warm_ms, encoded = [], [], []
    parts: dict[str, dict[str, list[float]]] = {"cold": {}, "warm": {}}
    equal = True
    for i in range(keystrokes):
        ch = TYPED[i % len(TYPED)]
        text = text[:cursor] + ch + text[cursor:]
        cursor += 1
        prefix, suffix = text[:cursor], text[cursor:]
        runs = {}
        # Alternate the order so that drift (thermal, caches) does not favour one side.
        for kind in ("cold", "warm") if i % 2 == 0 else ("warm", "cold"):
            s = store if kind == "warm" else DocumentCacheStore(model_hash=engine.model_hash)
            runs[kind] = complete(engine, s, prefix, suffix, sync)
        (cold, c_ms, c_parts), (warm, w_ms, w_parts) = runs["cold"], runs["warm"]
        equal &= cold.tokens == warm.tokens and cold.text == warm.text
        cold_ms.append(c_ms)
        warm_ms.append(w_ms)
        for kind, p in (("cold", c_parts), ("warm", w_parts)):
            for k, v in p.items():
                parts[kind].setdefault(k, []).append(v)
        encoded.append(warm.encoded_tokens)
    # Reopen from disk: close (spill), then the next completion restores the entry.
    restore_ms, restore_encoded = [], []
    for _ in range(min(5, keystrokes)):
        store.close(URI)
        store.wait_for_spills()  # the spill is written in the background; time the restore
        out, ms, _ = complete(engine, store, text[:cursor], text[cursor:], sync)
        restore_ms.append(ms)
        restore_encoded.append(out.encoded_tokens)
    cold_med, warm_med = statistics.median(cold_ms), statistics.median(warm_ms)
    enc_cold, enc_warm = statistics.median(parts["cold"]["encode"]), statistics.median(parts["warm"]["encode"])
    stats = store.stats()
    return {
        "context_tokens": len(first.context_ids),
        "generated_tokens_first": len(first.tokens),
        "denoising_steps_first": first.stats.steps,
        "cold_ms": summary(cold_ms),
        "warm_ms": summary(warm_ms),
        "speedup_median": round(cold_med / warm_med, 2),
        "encode_cold_ms": summary(parts["cold"]["encode"]),
        "encode_warm_ms": summary(parts["warm"]["encode"]),
        "encode_speedup_median": round(enc_cold / max(enc_warm, 1e-6), 2),
        "model_speedup_median": round(model_ms(parts["cold"]) / max(model_ms(parts["warm"]), 1e-6), 2),
        "breakdown_median_ms": {
            kind: {k: round(statistics.median(v), 3) for k, v in p.items()} for kind, p in parts.items()
        },
        "warm_encoded_tokens": encoded,
        "keystrokes_one_block": sum(e <= b for e in encoded),
        "restore_from_disk_ms": summary(restore_ms),
        "restore_encoded_tokens": restore_encoded,
        "outputs_equal": equal,
        "store": {k: stats[k] for k in ("hits", "misses", "reused_tokens", "encoded_tokens",
                                        "bytes_in_memory", "spills", "restores")},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the JSON report to this file")
    ap.add_argument("--keystrokes", type=int, default=12, help="one-character edits to time")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--max-tokens", type=int, default=32, help="tokens per completion")
    ap.add_argument("--max-steps-per-block", type=int, default=4,
                    help="denoising steps per block in the main run (0: one token per step)")
    ap.add_argument("--no-worst-case", action="store_true", help="skip the one-token-per-step run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    path, text = source_file()
    cursor = cursor_in_middle(text)
    sampler = SamplerConfig(max_tokens=args.max_tokens, max_steps_per_block=args.max_steps_per_block)
    engine = build_engine(args.preset, args.device, args.seed, sampler)
    report: dict = {
        "benchmark": "cache_bench",
        "file": {
            "path": path,
            "lines": text.count("\n"),
            "tokens": len(engine.tokenizer.encode(text)),
            "cursor_line": text.count("\n", 0, cursor) + 1,
        },
        "model": {"preset": args.preset, **PRESETS[args.preset], "weights": "random",
                  "vocab_size": engine.tokenizer.vocab_size,
                  "parameters": sum(p.numel() for p in engine.model.parameters())},
        "window": {"max_prefix": engine.window.max_prefix, "max_suffix": engine.window.max_suffix},
        "sampler": {"block_size": sampler.block_size, "threshold": sampler.threshold,
                    "max_tokens": sampler.max_tokens,
                    "max_steps_per_block": sampler.max_steps_per_block},
        "machine": {"device": args.device, "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
    }
    with tempfile.TemporaryDirectory(prefix="cache_bench_") as tmp:
        report.update(run_session(engine, text, cursor, args.keystrokes, Path(tmp) / "kv", sync))
        if not args.no_worst_case:
            worst = Engine(engine.loaded, sampler.replace(max_steps_per_block=0))
            w = run_session(worst, text, cursor, max(4, args.keystrokes // 2), Path(tmp) / "kv2", sync)
            report["one_token_per_step"] = {
                k: w[k] for k in ("cold_ms", "warm_ms", "speedup_median", "model_speedup_median",
                                  "outputs_equal", "denoising_steps_first", "breakdown_median_ms")
            }
    out = json.dumps(report, indent=2)
    print(out)
    if args.out:
        Path(args.out).write_text(out + "\n")
    ok = report["outputs_equal"] and report.get("one_token_per_step", {}).get("outputs_equal", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
