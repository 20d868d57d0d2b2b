"""Real-time latency through a real client: a simulated typist drives the server over stdio.

One session = one fresh `python -m lsp_server` process. The typist opens a 2,000-line
Python file (`report.benchmark_document`) in which some target lines were emptied, then,
for each target, jumps the cursor there, requests a completion, and retypes the line one
character at a time: each key is an incremental didChange followed at once by a
completion request, 80-150 ms apart. Like an editor it sends $/cancelRequest for the
previous request when a new key arrives, and at the end of each line it waits for the
answer (the user looks at the suggestion).

Request kinds: `cold` (the first request of a fresh server), `jump` (the first request
after a cursor jump), `warm` (every request while typing). A request is `served` when
its answer arrived before the next edit, `superseded` when an edit came first (the editor
would drop the answer), `cancelled` when the server answered RequestCancelled.

    python -m dlsp_benchmarks.latency --model DIR [--lines 2000 --keystrokes 300 --cold-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from dlsp_benchmarks.lsp_client import BenchClient, Reply
from dlsp_benchmarks.machine import machine_info
from dlsp_benchmarks.report import (
    benchmark_document,
    model_label,
    percentiles,
    write_json,
)

TARGETS = {"warm_p50_ms": 100.0, "warm_p95_ms": 250.0, "warm_vs_cold_speedup": 5.0}


@dataclass
class LatencyConfig:
    model: str | None = None
    lines: int = 2000
    keystrokes: int = 300
    targets: int = 12  # lines to retype (a cursor jump before each)
    keys_per_target: int = 0  # type only the first N characters of each line (0: all)
    cold_runs: int = 3  # fresh servers (the typing session is the first)
    min_gap_ms: float = 80.0
    max_gap_ms: float = 150.0
    max_tokens: int = 32
    block_size: int | None = None
    threshold: float | None = None
    budget_ms: float = 0.0  # the server's latencyBudgetMs (0: none)
    request: str = "inline"  # "inline" (textDocument/inlineCompletion) or "completion"
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    timeout_s: float = 300.0
    settings: tuple[tuple[str, object], ...] = ()  # more server settings (--setting NAME=JSON)
    invoke_jumps: bool = False  # the first request at each target (and cold ones): Invoked

    def init_options(self) -> dict:
        opts: dict = {"maxTokens": self.max_tokens, "device": self.device, "logLevel": "info"}
        if self.model:
            opts["modelPath"] = str(Path(self.model).resolve())
        if self.block_size:
            opts["blockSize"] = self.block_size
        if self.threshold is not None:
            opts["threshold"] = self.threshold
        if self.budget_ms:
            opts["latencyBudgetMs"] = self.budget_ms
        opts.update(self.settings)
        return opts


@dataclass
class Target:
    line: int  # 0-based line index
    indent: str
    content: str  # what the typist types (the line without its indentation)


def pick_targets(text: str, n: int, seed: int) -> list[Target]:
    """n code lines of 12-60 characters, in a random (jumping) order, away from the top."""
    lines = text.splitlines()
    cands = [
        i for i, ln in enumerate(lines)
        if i >= min(20, len(lines) // 4) and 12 <= len(ln.strip()) <= 60
        and not ln.lstrip().startswith(("#", '"', "'")) and ln.isascii()
    ]
    if not cands:
        raise ValueError("the benchmark document has no line suitable for typing")
    rng = random.Random(seed)
    chosen = rng.sample(cands, min(n, len(cands)))
    out = []
    for i in chosen:
        ln = lines[i]
        indent = ln[: len(ln) - len(ln.lstrip())]
        out.append(Target(i, indent, ln.strip()))
    return out


def blank_targets(text: str, targets: list[Target]) -> list[str]:
    """The document's lines with every target line cut down to its indentation."""
    lines = text.splitlines()
    for tg in targets:
        lines[tg.line] = tg.indent
    return lines


@dataclass
class Record:
    kind: str  # cold | jump | warm
    outcome: str  # served | superseded | cancelled | error
    latency_ms: float | None
    chars: int
    tokens: int | None
    server: dict


def _record(kind: str, reply: Reply, server_lines: dict, tokenizer) -> Record:
    if reply.error and "cancel" in reply.error.lower():
        outcome = "cancelled"
    elif reply.error:
        outcome = "error"
    elif reply.superseded:
        outcome = "superseded"
    else:
        outcome = "served"
    text = reply.text or ""
    tokens = len(tokenizer.encode(text)) if tokenizer is not None and text else (0 if not text else None)
    return Record(kind, outcome, reply.latency_ms, len(text), tokens, server_lines.get(reply.rid, {}))


def _tokenizer(model: str | None):
    """The model's tokenizer, to count the tokens of each answer (None if it cannot be read)."""
    from diffusion_core.checkpoint import DEFAULT_MODEL_DIR
    from diffusion_core.tokenizer import CodeTokenizer

    path = Path(model) if model else DEFAULT_MODEL_DIR
    try:
        return CodeTokenizer.load(path / "tokenizer.json")
    except Exception:  # an HF directory with another tokenizer format: count chars only
        return None


async def typing_session(cfg: LatencyConfig, text: str, uri: str, tokenizer, log) -> dict:
    """The typist's session on one fresh server; returns records, status and start time."""
    targets = pick_targets(text, cfg.targets, cfg.seed)
    lines = blank_targets(text, targets)
    rng = random.Random(cfg.seed + 1)
    records: list[tuple[str, Reply]] = []
    tasks: list[asyncio.Task] = []
    async with BenchClient(cfg.init_options(), threads=cfg.threads, timeout_s=cfg.timeout_s) as c:
        log(f"latency: server ready in {c.start_ms:.0f} ms; typing {cfg.keystrokes} keys")
        version = 1
        c.open(uri, "\n".join(lines) + "\n", version)
        typed = 0
        for n, tg in enumerate(targets):
            if typed >= cfg.keystrokes:
                break
            col = len(tg.indent)
            reply, task = c.request(uri, tg.line, col, cfg.request, invoked=cfg.invoke_jumps)
            await task  # a jump: the user waits for the first suggestion at the new place
            records.append(("cold" if n == 0 else "jump", reply))
            pending: tuple[Reply, asyncio.Task] | None = None
            content = tg.content[: cfg.keys_per_target] if cfg.keys_per_target else tg.content
            for k, ch in enumerate(content):
                if typed >= cfg.keystrokes:
                    break
                if pending is not None and not pending[1].done():
                    pending[0].superseded = True
                    c.cancel(pending[0])
                version += 1
                c.insert(uri, version, tg.line, col, ch)
                col += 1
                typed += 1
                pending = c.request(uri, tg.line, col, cfg.request)
                records.append(("warm", pending[0]))
                tasks.append(pending[1])
                if k == len(content) - 1 or typed >= cfg.keystrokes:
                    await pending[1]  # end of the line: the user reads the suggestion
                else:
                    await asyncio.sleep(rng.uniform(cfg.min_gap_ms, cfg.max_gap_ms) / 1000)
        await asyncio.gather(*tasks)  # every answer, superseded ones included
        server_lines = await c.job_timings()
        status = await c.status()
        start_ms = c.start_ms
    recs = [_record(kind, r, server_lines, tokenizer) for kind, r in records]
    return {"records": recs, "status": status, "start_ms": start_ms, "targets": len(targets)}


async def cold_session(cfg: LatencyConfig, text: str, uri: str, tokenizer) -> tuple[Record, float]:
    """A fresh server, the document opened, one request at the first target line."""
    tg = pick_targets(text, cfg.targets, cfg.seed)[0]
    lines = blank_targets(text, [tg])
    async with BenchClient(cfg.init_options(), threads=cfg.threads, timeout_s=cfg.timeout_s) as c:
        c.open(uri, "\n".join(lines) + "\n")
        reply, task = c.request(uri, tg.line, len(tg.indent), cfg.request, invoked=cfg.invoke_jumps)
        await task
        server_lines = await c.job_timings()
        start_ms = c.start_ms
    return _record("cold", reply, server_lines, tokenizer), start_ms


def summarize(cfg: LatencyConfig, session: dict, colds: list[tuple[Record, float]],
              doc_chars: int) -> dict:
    recs: list[Record] = session["records"] + [r for r, _ in colds]
    by = {k: [r for r in recs if r.kind == k and r.outcome == "served"] for k in ("warm", "cold", "jump")}
    lat = {k: percentiles(r.latency_ms for r in v if r.latency_ms is not None) for k, v in by.items()}
    typing = [r for r in session["records"] if r.kind == "warm"]
    dropped = [r for r in typing if r.outcome in ("superseded", "cancelled")]
    served = [r for r in recs if r.outcome == "served"]
    nonempty = [r for r in served if r.chars > 0]
    warm_engine = [r.server for r in by["warm"] if r.server]
    p50w, p95w, p50c = lat["warm"]["p50"], lat["warm"]["p95"], lat["cold"]["p50"]
    speedup = round(p50c / p50w, 2) if p50w and p50c else None
    status = session["status"]
    return {
        "benchmark": "latency",
        "machine": machine_info(cfg.threads),
        "model": model_label(cfg.model),
        "config": asdict(cfg),
        "document": {"lines": cfg.lines, "chars": doc_chars, "targets": session["targets"],
                     "source": "the project's own Python source, concatenated "
                               "(dlsp_benchmarks.report.benchmark_document); not in the training data"},
        "p50_ms_warm": p50w, "p95_ms_warm": p95w, "p99_ms_warm": lat["warm"]["p99"],
        "p50_ms_cold": p50c, "p95_ms_cold": lat["cold"]["p95"], "p99_ms_cold": lat["cold"]["p99"],
        "p50_ms_jump": lat["jump"]["p50"], "p95_ms_jump": lat["jump"]["p95"],
        "p99_ms_jump": lat["jump"]["p99"],
        "warm_vs_cold_speedup": speedup,
        "latency_ms": lat,
        # An empty answer (the model ended the line at once) is cheap; a weak model that
        # mostly answers nothing meets latency targets for nothing. These count only answers
        # with text.
        "latency_ms_nonempty": {k: percentiles(r.latency_ms for r in v if r.latency_ms is not None and r.chars > 0)
                                for k, v in by.items()},
        "requests": len(recs),
        "typing_requests": len(typing),
        "cancelled_or_superseded_share": round(len(dropped) / len(typing), 3) if typing else None,
        "outcomes": {o: sum(r.outcome == o for r in recs)
                     for o in ("served", "superseded", "cancelled", "error")},
        "empty_answer_share": round(1 - len(nonempty) / len(served), 3) if served else None,
        "tokens_per_request": percentiles(r.tokens for r in nonempty if r.tokens is not None),
        "chars_per_request": percentiles(r.chars for r in nonempty),
        "server_start_ms": percentiles([session["start_ms"], *(s for _, s in colds)]),
        "server_side_warm": {
            # request handler to answer (worker queue included), the completion job
            # (context cut, cache lookup, engine) and the engine alone
            "server_ms": percentiles(s["server_ms"] for s in warm_engine),
            "job_ms": percentiles(s["total_ms"] for s in warm_engine),
            "engine_ms": percentiles(s["engine_ms"] for s in warm_engine),
            "steps": percentiles(s["steps"] for s in warm_engine),
            "reused_context_tokens": percentiles(s["reused_tokens"] for s in warm_engine),
            "encoded_context_tokens": percentiles(s["encoded_tokens"] for s in warm_engine),
            # answers cut short by the latency budget (--budget-ms)
            "out_of_time_share": round(sum(s["out_of_time"] for s in warm_engine) / len(warm_engine), 3)
            if warm_engine else None,
        },
        # the first request at each target: with --invoke-jumps the user asked, and the
        # single-line job ranked `candidates` lines in `rerank_ms` (the last job of the request)
        "server_side_jump": {
            "job_ms": percentiles(r.server["total_ms"] for r in by["jump"] if r.server),
            "rerank_ms": percentiles(r.server.get("rerank_ms", 0.0) for r in by["jump"] if r.server),
            "candidates": percentiles(r.server.get("candidates", 0) for r in by["jump"] if r.server),
        },
        "server_status": {k: status.get(k) for k in (
            "requests_served", "requests_cancelled", "requests_superseded",
            "stale_results_dropped", "errors", "completion_latency_ms", "cache", "model")},
        "targets": {
            "warm_p50_under_100ms": None if p50w is None else p50w < TARGETS["warm_p50_ms"],
            "warm_p95_under_250ms": None if p95w is None else p95w < TARGETS["warm_p95_ms"],
            "warm_at_least_5x_faster_than_cold":
                None if speedup is None else speedup >= TARGETS["warm_vs_cold_speedup"],
        },
        "samples": [{"kind": r.kind, "outcome": r.outcome, "ms": r.latency_ms, "tokens": r.tokens}
                    for r in recs],
    }


async def run_latency(cfg: LatencyConfig, log=lambda m: None) -> dict:
    text = benchmark_document(cfg.lines)
    tokenizer = _tokenizer(cfg.model)
    with tempfile.TemporaryDirectory(prefix="diffusion-lsp-bench-") as d:
        uri = (Path(d) / "bench_document.py").as_uri()
        session = await typing_session(cfg, text, uri, tokenizer, log)
        colds = []
        for i in range(max(0, cfg.cold_runs - 1)):
            log(f"latency: cold server {i + 2}/{cfg.cold_runs}")
            colds.append(await cold_session(cfg, text, uri, tokenizer))
    return summarize(cfg, session, colds, len(text))


# -- command line ---------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("latency")
    g.add_argument("--lines", type=int, default=2000, help="lines of the typed document (2000)")
    g.add_argument("--keystrokes", type=int, default=300, help="keys typed in the session (300)")
    g.add_argument("--targets", type=int, default=12, help="lines retyped, one cursor jump each")
    g.add_argument("--keys-per-target", type=int, default=0,
                   help="type only the first N characters of each line (default 0: all)")
    g.add_argument("--cold-runs", type=int, default=3, help="fresh servers for cold requests (3)")
    g.add_argument("--gap-ms", type=float, nargs=2, default=(80.0, 150.0), metavar=("MIN", "MAX"),
                   help="pause between keys, uniform in [MIN, MAX] ms (80 150)")
    g.add_argument("--request", choices=["inline", "completion"], default="inline",
                   help="textDocument/inlineCompletion (default) or textDocument/completion")
    g.add_argument("--budget-ms", type=float, default=0.0,
                   help="the server's latencyBudgetMs setting (default 0: no budget)")
    g.add_argument("--invoke-jumps", action="store_true",
                   help="send the first request at each target line (and the cold ones) as the user "
                        "asking (trigger kind Invoked: both lengths, and the single line reranked "
                        "among completionCandidates lines); typing requests stay automatic")
    g.add_argument("--setting", type=_setting, action="append", default=[], metavar="NAME=JSON",
                   help="another server setting, e.g. nameDiagnostics=false (repeatable)")


def _setting(arg: str) -> tuple[str, object]:
    name, sep, value = arg.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {arg!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: {value!r} is not JSON") from None


def config_from_args(args: argparse.Namespace) -> LatencyConfig:
    return LatencyConfig(
        model=args.model, lines=args.lines, keystrokes=args.keystrokes, targets=args.targets,
        keys_per_target=args.keys_per_target,
        cold_runs=args.cold_runs, min_gap_ms=args.gap_ms[0], max_gap_ms=args.gap_ms[1],
        max_tokens=args.max_tokens, block_size=args.block_size, threshold=args.threshold,
        request=args.request, budget_ms=args.budget_ms, device=args.device, threads=args.threads, seed=args.seed,
        settings=tuple(args.setting), invoke_jumps=args.invoke_jumps,
    )


def run(args: argparse.Namespace) -> int:
    from dlsp_benchmarks import plots

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from dlsp_benchmarks.options import prepare

    cfg = config_from_args(prepare(args))
    result = asyncio.run(run_latency(cfg, log))
    out = Path(args.out_dir)
    write_json(out / "latency.json", result)
    plots.latency_plot(result, out / "latency.png")
    log(f"latency: warm p50 {result['p50_ms_warm']} ms, p95 {result['p95_ms_warm']} ms; "
        f"cold p50 {result['p50_ms_cold']} ms; jump p50 {result['p50_ms_jump']} ms; "
        f"superseded {result['cancelled_or_superseded_share']} -> {out / 'latency.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from dlsp_benchmarks.options import standalone

    return standalone("python -m dlsp_benchmarks.latency", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
