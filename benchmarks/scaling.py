"""Latency against document length (100 to 20,000 lines) and block size, warm and cold.

Runs the server's own completion job (`lsp_server.service.Service.complete`) with a
`dlsp_cache.DocumentCacheStore`, in process, so the numbers are the model work plus the
per-request text work (tokenizing the whole prefix and suffix, windowing) without the
JSON-RPC hop (see `dlsp_benchmarks.latency` for that). The cursor sits on an emptied code line
in the middle of the document:
  cold  a fresh cache store: the whole context window is encoded;
  warm  the line is retyped one character at a time, each key a request that reuses the
        cached blocks of the previous one.
`tokenize_ms` (building the context ids from the text) is reported on its own: it is the
part that grows with the document once the context window is full.

    python -m dlsp_benchmarks.scaling --model DIR [--doc-lines 100 1000 20000 --scaling-block-sizes 16 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from diffusion_core.engine import Engine
from dlsp_benchmarks.latency import pick_targets
from dlsp_benchmarks.machine import machine_info
from dlsp_benchmarks.report import (
    benchmark_document,
    model_label,
    percentiles,
    write_json,
)
from dlsp_cache import DocumentCacheStore
from lsp_server.service import Service

URI = "file:///bench/scaling.py"


def _middle_target(text: str, seed: int):
    """The candidate typing line closest to the middle of the document."""
    mid = text.count("\n") // 2
    cands = pick_targets(text, 10**6, seed)
    return min(cands, key=lambda tg: (abs(tg.line - mid), tg.line))


def measure(engine: Engine, lines: int, repeats: int, max_tokens: int, seed: int) -> dict:
    text = benchmark_document(lines)
    tg = _middle_target(text, seed)
    doc = text.splitlines(keepends=True)
    before = "".join(doc[: tg.line]) + tg.indent
    after = "\n" + "".join(doc[tg.line + 1 :])
    b = engine.sampler.block_size

    def job(typed: str, store: DocumentCacheStore):
        t = before + typed + after
        return Service(engine, store).complete(t, len(before) + len(typed), uri=URI,
                                               max_tokens=max_tokens).timings

    tok = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        engine.infill_context(before, after, b)
        tok.append((time.perf_counter() - t0) * 1000)
    cold, warm = [], []
    for _ in range(max(1, repeats)):
        cold.append(job("", DocumentCacheStore(model_hash=engine.model_hash)))
    store = DocumentCacheStore(model_hash=engine.model_hash)
    job("", store)
    for k in range(max(1, repeats)):
        warm.append(job(tg.content[: k + 1], store))
    return {
        "lines": lines, "block_size": b, "chars": len(text),
        "tokenize_ms": round(statistics.median(tok), 2),
        "cold_ms": percentiles(r.total_ms for r in cold),
        "warm_ms": percentiles(r.total_ms for r in warm),
        "cold_encoded_tokens": statistics.median(r.encoded_tokens for r in cold),
        "warm_encoded_tokens": statistics.median(r.encoded_tokens for r in warm),
        "warm_reused_tokens": statistics.median(r.reused_tokens for r in warm),
        "tokens_per_request": statistics.median(r.tokens for r in cold + warm),
        "steps_per_request": statistics.median(r.steps for r in cold + warm),
    }


def run_scaling(args: argparse.Namespace, log=lambda m: None) -> dict:
    from dlsp_benchmarks.options import sampler_from_args

    # --block-size is left to the rows: each one sets its own from --scaling-block-sizes
    base = sampler_from_args(args).replace(max_tokens=args.max_tokens)
    loaded = Engine.from_path(args.model, device=args.device, sampler=base).loaded
    rows = []
    for b in args.scaling_block_sizes:
        engine = Engine(loaded, base.replace(block_size=b))
        measure(engine, min(args.doc_lines), 1, args.max_tokens, args.seed)  # warm-up
        for n in args.doc_lines:
            r = measure(engine, n, args.repeats, args.max_tokens, args.seed)
            rows.append(r)
            log(f"scaling: B={b} {n} lines: cold p50 {r['cold_ms']['p50']} ms, warm p50 "
                f"{r['warm_ms']['p50']} ms, tokenize {r['tokenize_ms']} ms")
    return {
        "benchmark": "scaling",
        "machine": machine_info(args.threads),
        "model": model_label(args.model),
        "config": {"doc_lines": args.doc_lines, "block_sizes": args.scaling_block_sizes,
                   "repeats": args.repeats, "max_tokens": args.max_tokens,
                   "threshold": base.threshold, "device": args.device,
                   "window": {"max_prefix": engine.window.max_prefix,
                              "max_suffix": engine.window.max_suffix}},
        "path": "in process: lsp_server.service.Service.complete + dlsp_cache.DocumentCacheStore",
        "rows": rows,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scaling")
    g.add_argument("--doc-lines", type=int, nargs="+",
                   default=[100, 500, 1000, 2000, 5000, 10000, 20000], help="document lengths")
    g.add_argument("--scaling-block-sizes", type=int, nargs="+", default=[16, 32, 64],
                   help="block sizes (16 32 64)")
    g.add_argument("--repeats", type=int, default=5, help="cold and warm requests per point (5)")


def run(args: argparse.Namespace) -> int:
    from dlsp_benchmarks import plots
    from dlsp_benchmarks.options import prepare

    prepare(args)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run_scaling(args, log)
    out = Path(args.out_dir)
    write_json(out / "scaling.json", result)
    plots.scaling_plot(result, out / "scaling.png")
    log(f"scaling: -> {out / 'scaling.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from dlsp_benchmarks.options import standalone

    return standalone("python -m dlsp_benchmarks.scaling", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
