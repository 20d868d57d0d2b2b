"""`diffusion-lsp eval`: infill, next-line and repair quality of a model (and the AR baseline).

(a) HumanEval single-line and multi-line infilling pass@1 (greedy; each program run in its
    own process under a timeout), (b) exact-match next-line completion on held-out files,
    and mid-line completion (the cursor inside a held-out line, as while typing: is the
    suggestion the rest of the line, or at least a start of it that Tab could accept),
    (c) repair: held-out functions with 1-3 random token edits restored exactly, and code
    with a syntax error that comes back parsing and equal to the original (the edit model
    alone), (d) check: syntax errors and misspelt names repaired through `check` itself,
    and findings on clean files (`check_quality`).
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import get_args

import torch

from diffusion_core.data import is_heldout, list_source_files
from diffusion_core.engine import Engine
from diffusion_core.policy import Fallback
from diffusion_core.sampler import StopRule
from diffusion_core.scoring import causal_sequence_scores
from dlsp_benchmarks import humaneval
from dlsp_benchmarks.check_quality import check_scores, neighbourhoods
from lsp_server.settings import Settings

MIN_PROBABILITY = Settings().min_probability  # where the server cuts a suggestion


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: the embedded model)")
    p.add_argument("--ar-model", help="autoregressive baseline directory, evaluated side by side")
    p.add_argument("--heldout-dirs", nargs="*",
                   help="source dirs whose held-out split to use (default: the model's training.json data_dirs)")
    p.add_argument("--single-line", type=int, default=1033, help="HumanEval single-line tasks (max 1033)")
    p.add_argument("--multi-line", type=int, default=200, help="HumanEval multi-line tasks (evenly spaced subset)")
    p.add_argument("--next-line", type=int, default=300, help="held-out next-line positions")
    p.add_argument("--mid-line", type=int, default=300,
                   help="held-out cursor positions inside a line (the rest of the line is the answer)")
    p.add_argument("--dev-lines", type=int, default=0, metavar="N",
                   help="HumanEval-shaped single-line holes in small documented held-out functions, "
                        "scored by exact match: a dev set to pick checkpoints by (default 0: skip)")
    p.add_argument("--repair", type=int, default=200, help="held-out functions for each repair test")
    p.add_argument("--check", type=int, default=60,
                   help="held-out functions for the check rows (syntax error and misspelt-name "
                        "repairs through `check`; 0: skip)")
    p.add_argument("--check-clean-files", type=int, default=10,
                   help="clean held-out files checked whole for the false-finding rate")
    p.add_argument("--threshold", type=float, default=None, help="confidence threshold (default: model's)")
    p.add_argument("--block-size", type=int, default=None)
    p.add_argument("--fallback", choices=get_args(Fallback), default=None,
                   help="position a step commits when none passes the threshold (default: the sampler's)")
    p.add_argument("--no-token-healing", dest="heal", action="store_false",
                   help="complete from the cursor's exact token split (default: token healing, as the server)")
    from dlsp_benchmarks.options import add_decoder_arguments

    add_decoder_arguments(p)
    p.add_argument("--rerank", type=int, default=0, metavar="K",
                   help="HumanEval single-line holes: rerank the greedy line and K branches from the "
                        "most likely first tokens by the infill and the suffix read after them "
                        "(diffusion_core/rerank.py; models with a causal path; default 0: greedy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_out", help="write the report as JSON to this file")
    p.add_argument("--markdown", help="write the report table as Markdown to this file")
    p.add_argument("--merge", nargs="+", default=[], metavar="REPORT.json",
                   help="add the models of earlier reports (--json) to this one, e.g. an AR "
                        "baseline evaluated by its own process (--model AR_DIR) on the other core")


# -- jobs ---------------------------------------------------------------------------------
def complete_line(engine: Engine, prefix: str, suffix: str, single: bool,
                  rerank: int = 0) -> tuple[str, int, float, int]:
    """(completion, tokens, ms, forward passes) of one HumanEval hole; `rerank` K > 0: the
    best of the greedy line and K branches (single-line holes; tokens, ms and forward passes
    are the greedy infill's, the reranking's cost is not in them)."""
    out = engine.infill(prefix, suffix, max_tokens=48 if single else 160, stop_at_newline=False)
    text = out.text
    if single and "\n" in text:
        text = text[: text.index("\n") + 1]
    if single and rerank:
        best = engine.rerank_line(prefix, suffix, text, k=rerank, max_tokens=48, inserts_line_break=True,
                                  after=out)[0]
        text = best.text + "\n"
    return text, len(out.tokens), out.total_ms, out.stats.steps


def reference_nll(engine: Engine, task: humaneval.InfillTask) -> tuple[float, int]:
    """(-log p, tokens) of a hole's reference answer: the canonical middle and `<eoi>`,
    after the (token-healed) infill context, under the causal path, as the greedy infill
    reads it (the healed-away piece is spelt out first, as the decoder must). Pass@1 is a
    count of a few dozen holes; this is the same holes seen smoothly (every hole adds to
    it, right or wrong), for telling checkpoints apart (Schaeffer et al. 2023 on
    continuous metrics)."""
    healed = engine.healing(task.prompt)
    ids = engine.infill_context(task.prompt, task.suffix)
    ref = engine.tokenizer.encode(healed.removed + task.canonical_solution)
    (lp,) = causal_sequence_scores(engine.model, ids, [ref], [engine.special.eoi])
    return -lp, len(ref) + 1


def nll_summary(scores: list[tuple[float, int]]) -> dict:
    """Mean -log p per hole and per token (nats) of `reference_nll` scores."""
    nats, toks = sum(s for s, _ in scores), sum(n for _, n in scores)
    return {"holes": len(scores), "per_hole": nats / max(1, len(scores)), "per_token": nats / max(1, toks)}


def humaneval_scores(engine: Engine, kind: str, limit: int, log, rerank: int = 0) -> dict:
    tasks = humaneval.load_tasks(kind, limit)
    comps, toks, ms, steps = [], 0, 0.0, 0
    for i, t in enumerate(tasks):
        c, n, dt, k = complete_line(engine, t.prompt, t.suffix, kind == "single_line", rerank)
        comps.append(c)
        toks, ms, steps = toks + n, ms + dt, steps + k
        if (i + 1) % 100 == 0:
            log(f"  {kind}: {i + 1}/{len(tasks)}")
    rate, ok = humaneval.pass_rate(tasks, comps)
    exact = sum(c.strip() == t.canonical_solution.strip() for c, t in zip(comps, tasks, strict=True))
    split = None
    if len(tasks) > humaneval.REPORTED:
        reported = {t.task_id for t in humaneval.load_tasks(kind, humaneval.REPORTED)}
        split = humaneval.split_rates(tasks, ok, reported)
    ref = None
    if kind == "single_line" and engine.model.cfg.has_causal_path:
        nll = [reference_nll(engine, t) for t in tasks]
        ref = nll_summary(nll)
        if split:
            for name, inside in (("reported", True), ("rest", False)):
                split[name]["reference_nll"] = nll_summary(
                    [x for t, x in zip(tasks, nll, strict=True) if (t.task_id in reported) == inside])
    return {"tasks": len(tasks), "pass@1": rate, "exact_match": exact / len(tasks),
            # -log p of the canonical answers (causal models): the same holes, smoothly
            **({"reference_nll": ref} if ref else {}),
            # the quoted 200 and the other tasks (where checkpoints are chosen) apart
            **({"split": split} if split else {}),
            # which tasks passed: two runs (or a run and a subset of it) compare task by task
            "passed_tasks": [t.task_id for t, good in zip(tasks, ok, strict=True) if good],
            "tokens": toks, "tok_per_s": toks / (ms / 1000) if ms else 0.0,
            # denoising steps, or forward passes of draft and verify: tokens written per pass
            "steps": steps, "tokens_per_step": toks / steps if steps else None}


def heldout_texts(dirs: list[str], fraction: float, limit_files: int = 400) -> list[str]:
    texts = []
    for p in list_source_files(dirs, forbidden=[str(humaneval.eval_dir())]):
        try:
            t = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if is_heldout(t, fraction):
            texts.append(t)
        if len(texts) >= limit_files:
            break
    return texts


def next_line_scores(engine: Engine, texts: list[str], n: int, rng: random.Random) -> dict:
    hits = total = 0
    steps: list[int] = []
    tokens = 0
    ms = 0.0
    for _ in range(n * 5):
        if total >= n:
            break
        t = rng.choice(texts)
        lines = t.splitlines(keepends=True)
        if len(lines) < 5:
            continue
        i = rng.randrange(2, len(lines))
        target = lines[i].strip()
        if not target:
            continue
        prefix = "".join(lines[:i])
        out = engine.infill(prefix, "", max_tokens=48, stop_at_newline=True)
        hits += out.text.strip() == target
        total += 1
        steps.append(out.stats.steps)
        tokens, ms = tokens + len(out.tokens), ms + out.total_ms
    return {"positions": total, "exact_match": hits / max(1, total),
            "steps": sum(steps), "steps_p50": statistics.median(steps) if steps else None,
            "tokens": tokens, "tokens_per_step": tokens / sum(steps) if sum(steps) else None,
            "ms_per_line": ms / max(1, total)}


def mid_line_scores(engine: Engine, texts: list[str], n: int, rng: random.Random,
                    min_prob: float = MIN_PROBABILITY) -> dict:
    """Cursor at a random point inside a held-out line (past its indentation), the rest of
    the file after that line as the suffix: the position of a completion while typing.

    Scored whole (to the end of the line) and as the server shows it (`shown_*`): cut where
    the probability of the suggestion falls below `min_prob` (the server's `minProbability`).
    The cut output is the whole one's prefix (`StopRule.min_prob`): one decoding gives both."""
    total = 0
    whole_n = [0, 0, 0]  # exact, useful, empty: the whole line
    shown_n = [0, 0, 0]  # the same, as the server shows it
    rule = StopRule(-1, min_prob=min_prob)
    sampler = engine.sampler.replace(min_prob=0.0)
    ms = 0.0
    for _ in range(n * 20):
        if total >= n:
            break
        lines = rng.choice(texts).splitlines(keepends=True)
        if len(lines) < 5:
            continue
        i = rng.randrange(2, len(lines))
        line = lines[i].rstrip("\r\n")
        body = line.lstrip()
        if len(body) < 4:
            continue
        cut = len(line) - len(body) + rng.randrange(0, len(body) - 1)
        truth = line[cut:]
        prefix = "".join(lines[:i]) + line[:cut]
        out = engine.infill(prefix, "\n" + "".join(lines[i + 1 :]), max_tokens=48, stop_at_newline=True,
                            sampler=sampler)
        whole = out.text.split("\n", 1)[0].rstrip()
        k, _ = rule.confident(out.confidence, 1.0)
        shown = engine.text_after(out.tokens[:k], engine.healing(prefix, sampler).removed)
        total += 1
        for counts, s in ((whole_n, whole), (shown_n, shown.split("\n", 1)[0].rstrip())):
            counts[0] += s == truth.rstrip()
            counts[1] += bool(s.strip()) and truth.startswith(s)
            counts[2] += not s.strip()
        ms += out.total_ms
    d = max(1, total)
    (exact, useful, empty), (s_exact, s_useful, s_empty) = whole_n, shown_n
    return {"positions": total, "min_prob": min_prob,
            "exact_match": exact / d, "useful": useful / d, "empty": empty / d,
            "shown_exact_match": s_exact / d, "shown_useful": s_useful / d, "shown_empty": s_empty / d,
            "ms_per_line": ms / d}


def _top_level_functions(texts: list[str]):
    """(lines of the file, function node, first line, end line) of each parsing file's
    top-level functions, decorators included."""
    for t in texts:
        try:
            tree = ast.parse(t)
        except SyntaxError:
            continue
        lines = t.splitlines(keepends=True)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
                yield lines, node, node.lineno - 1 - len(node.decorator_list), node.end_lineno


def functions(texts: list[str], max_lines: int = 25) -> list[tuple[str, str, str]]:
    """(prefix, function source, suffix) for small top-level functions of held-out files."""
    return [("".join(lines[:a]), "".join(lines[a:b]), "".join(lines[b:]))
            for lines, _, a, b in _top_level_functions(texts) if 3 <= b - a <= max_lines]


def documented_functions(texts: list[str], max_lines: int = 30) -> list[tuple[str, list[str], int]]:
    """(file text before, lines, first body line after the docstring) of small top-level
    functions of held-out files that open with a docstring: the shape of a HumanEval problem."""
    out = []
    for lines, node, a, b in _top_level_functions(texts):
        doc = node.body[0] if node.body else None
        if (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str) and doc.end_lineno and len(node.body) > 1
                and b - a <= max_lines):
            out.append(("".join(lines[:a]), lines[a:b], doc.end_lineno - a))
    return out


def dev_line_scores(engine: Engine, texts: list[str], n: int, rng: random.Random) -> dict:
    """HumanEval-shaped holes from held-out code, for choosing between checkpoints without
    touching the test tasks: one whole line of the body of a small documented function,
    the file up to it as the prefix and the rest of the function as the suffix (as
    HumanEval's single-line infilling gives the prompt, with its imports and helpers, and
    the rest of the solution), decoded exactly as `humaneval_scores` does. Held-out code has no tests, so the score is
    the exact match of the stripped line (about three quarters of HumanEval's passes are
    exact matches for our models)."""
    funcs = documented_functions(texts)
    hits = total = 0
    for _ in range(n * 5):
        if total >= n or not funcs:
            break
        before, lines, body = rng.choice(funcs)
        i = rng.randrange(body, len(lines))
        if not lines[i].strip():
            continue
        c, *_ = complete_line(engine, before + "".join(lines[:i]), "".join(lines[i + 1 :]), True)
        hits += c.strip() == lines[i].strip()
        total += 1
    return {"holes": total, "functions": len(funcs), "exact_match": hits / max(1, total)}


def _token_edits(engine: Engine, src: str, k: int, rng: random.Random) -> str:
    ids = engine.tokenizer.encode(src)
    vocab = [i for i in range(engine.tokenizer.vocab_size) if i not in engine.tokenizer.special_ids]
    for _ in range(k):
        op = rng.choice(("insert", "delete", "substitute"))
        pos = rng.randrange(len(ids))
        if op == "insert":
            ids.insert(pos, rng.choice(vocab))
        elif op == "delete" and len(ids) > 1:
            del ids[pos]
        else:
            ids[pos] = rng.choice(vocab)
    return engine.tokenizer.decode(ids)


def _syntax_break(src: str, rng: random.Random) -> str | None:
    """Delete one ':' / ')' / ']' or a quote so that the function no longer parses."""
    spots = [i for i, c in enumerate(src) if c in ":)]"]
    rng.shuffle(spots)
    for i in spots[:10]:
        broken = src[:i] + src[i + 1 :]
        try:
            ast.parse(broken)
        except SyntaxError:
            return broken
    return None


def repair_scores(engine: Engine, funcs, n: int, rng: random.Random) -> dict:
    sample = rng.sample(funcs, min(n, len(funcs)))
    exact = syn_total = syn_fixed = 0
    unchanged_kept = 0
    for prefix, src, suffix in sample:
        broken = _token_edits(engine, src, rng.randint(1, 3), rng)
        out = engine.repair(prefix[-4000:], broken, suffix[:2000])
        exact += out.text == src
        same = engine.repair(prefix[-4000:], src, suffix[:2000])
        unchanged_kept += same.text == src
        bad = _syntax_break(src, rng)
        if bad is not None:
            syn_total += 1
            fixed = engine.repair(prefix[-4000:], bad, suffix[:2000]).text
            try:
                ast.parse(fixed)
                syn_fixed += fixed == src
            except SyntaxError:
                pass
    return {
        "functions": len(sample),
        "token_edits_restored": exact / max(1, len(sample)),
        "clean_code_left_unchanged": unchanged_kept / max(1, len(sample)),
        "syntax_errors": syn_total,
        "syntax_errors_fixed_exactly": syn_fixed / max(1, syn_total),
    }


def evaluate(engine: Engine, args, texts: list[str], log, repair: bool) -> dict:
    rng = random.Random(args.seed)
    t0 = time.time()
    r: dict = {"model": str(engine.loaded.path), "kind": engine.model.cfg.kind,
               "parameters": engine.model.num_parameters()}
    if args.single_line:
        r["humaneval_single_line"] = humaneval_scores(engine, "single_line", args.single_line, log, args.rerank)
        if args.rerank:
            r["humaneval_single_line"]["rerank"] = args.rerank
        log(f"  single-line pass@1 {r['humaneval_single_line']['pass@1']:.3f}")
        if split := r["humaneval_single_line"].get("split"):
            log(f"  of which the reported {split['reported']['tasks']}: {split['reported']['pass@1']:.3f}, "
                f"the other {split['rest']['tasks']}: {split['rest']['pass@1']:.3f}")
        if ref := r["humaneval_single_line"].get("reference_nll"):
            rest = (split or {}).get("rest", {}).get("reference_nll")
            log(f"  single-line reference NLL {ref['per_hole']:.3f} nats per hole"
                + (f" (the other {rest['holes']}: {rest['per_hole']:.3f})" if rest else ""))
    if args.multi_line:
        r["humaneval_multi_line"] = humaneval_scores(engine, "multi_line", args.multi_line, log)
        log(f"  multi-line pass@1 {r['humaneval_multi_line']['pass@1']:.3f}")
    if args.next_line and texts:
        r["next_line"] = next_line_scores(engine, texts, args.next_line, random.Random(args.seed))
    if args.dev_lines and texts:
        r["dev_lines"] = dev_line_scores(engine, texts, args.dev_lines, random.Random(f"{args.seed}/dev"))
        log(f"  dev lines exact {r['dev_lines']['exact_match']:.3f} ({r['dev_lines']['holes']} holes)")
    if args.mid_line and texts:
        r["mid_line"] = mid_line_scores(engine, texts, args.mid_line, random.Random(f"{args.seed}/mid"))
    if repair and args.repair and texts:
        r["repair"] = repair_scores(engine, functions(texts), args.repair, rng)
    if repair and args.check and texts:
        from lsp_server.service import Service

        r["check"] = check_scores(Service(engine).model(), neighbourhoods(texts), texts, args.check,
                                  random.Random(f"{args.seed}/check"),
                                  clean_files=args.check_clean_files, log=log)
        log(f"  check: syntax restored {r['check']['syntax_restored_exactly']:.3f}, "
            f"typos restored {r['check']['typos_restored']:.3f}, "
            f"{r['check']['findings_per_1000_clean_lines']:.2f} findings/1000 clean lines")
    r["seconds"] = round(time.time() - t0, 1)
    return r


def merged_models(paths: list[str]) -> dict:
    """{name: results} of earlier reports, read before the (long) evaluation starts."""
    out: dict = {}
    for path in paths:
        try:
            models = json.loads(Path(path).read_text())["models"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"diffusion-lsp eval: --merge {path}: not an eval report ({e})") from None
        for name, r in models.items():
            if name in out:
                raise SystemExit(f"diffusion-lsp eval: --merge: two reports have a {name!r} model")
            out[name] = r
    return out


def table(report: dict) -> str:
    models = report["models"]
    rows = [
        ("HumanEval single-line pass@1", ("humaneval_single_line", "pass@1")),
        ("HumanEval single-line exact match", ("humaneval_single_line", "exact_match")),
        ("HumanEval single-line pass@1, the reported 200", ("humaneval_single_line", "split", "reported", "pass@1")),
        ("HumanEval single-line pass@1, the other tasks (dev)", ("humaneval_single_line", "split", "rest", "pass@1")),
        ("HumanEval single-line reference NLL per hole (nats)", ("humaneval_single_line", "reference_nll", "per_hole")),
        ("  the same, the other tasks (dev)", ("humaneval_single_line", "split", "rest", "reference_nll", "per_hole")),
        ("HumanEval multi-line pass@1", ("humaneval_multi_line", "pass@1")),
        ("dev: documented-function line exact (held-out)", ("dev_lines", "exact_match")),
        ("held-out next-line exact match", ("next_line", "exact_match")),
        ("held-out mid-line: rest of line exact", ("mid_line", "exact_match")),
        ("held-out mid-line: useful (a start of the rest)", ("mid_line", "useful")),
        ("mid-line as shown (cut at minProbability): exact", ("mid_line", "shown_exact_match")),
        ("mid-line as shown: useful", ("mid_line", "shown_useful")),
        ("mid-line as shown: empty", ("mid_line", "shown_empty")),
        ("repair: 1-3 token edits restored", ("repair", "token_edits_restored")),
        ("repair: clean code left unchanged", ("repair", "clean_code_left_unchanged")),
        ("repair: syntax error fixed exactly", ("repair", "syntax_errors_fixed_exactly")),
        ("check: syntax error restored exactly", ("check", "syntax_restored_exactly")),
        ("check: syntax error fixed, file parses", ("check", "syntax_fixed_and_parses")),
        ("check: misspelt name restored", ("check", "typos_restored")),
        ("check: findings per 1000 clean lines", ("check", "findings_per_1000_clean_lines")),
        ("single-line tokens/s (end to end)", ("humaneval_single_line", "tok_per_s")),
        ("single-line tokens per step (forward)", ("humaneval_single_line", "tokens_per_step")),
        ("next-line tokens per step (forward)", ("next_line", "tokens_per_step")),
    ]
    names = list(models)
    out = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, (sec, *path) in rows:
        key = path[-1]
        cells = []
        for n in names:
            v = models[n].get(sec, {})
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            if v is None:
                cells.append("n/a")
            elif key in ("tok_per_s", "tokens_per_step", "findings_per_1000_clean_lines", "per_hole"):
                cells.append(f"{v:.1f}" if key == "tok_per_s" else f"{v:.2f}")
            else:
                cells.append(f"{100 * v:.1f}%")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from dlsp_benchmarks.options import sampler_from_args

    sampler = sampler_from_args(args)
    engine = Engine.from_path(args.model, sampler=sampler)
    if engine.is_ar and args.ar_model:
        raise SystemExit("diffusion-lsp eval: --model is already autoregressive; leave out --ar-model")
    merged = merged_models(args.merge)
    name = engine.model.cfg.kind  # "diffusion", "joint" or "ar"
    own = [name] + (["ar"] if args.ar_model else [])
    if clash := [n for n in own if n in merged]:
        raise SystemExit(f"diffusion-lsp eval: --merge: this run already has a {clash[0]!r} model")
    dirs = args.heldout_dirs
    fraction = 0.02
    record_path = engine.loaded.path / "training.json"
    if dirs is None and record_path.exists():
        rec = json.loads(record_path.read_text())
        dirs = rec.get("data_dirs", [])
        fraction = rec.get("heldout_fraction", fraction)
    texts = heldout_texts(dirs or [], fraction)
    log(f"eval: {len(texts)} held-out files")
    report = {
        "machine": {"cores": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "platform": platform.platform()},
        "sampler": {"block_size": sampler.block_size, "threshold": sampler.threshold,
                    "fallback": sampler.fallback, "token_healing": sampler.heal,
                    "decoder": sampler.decoder_for(name), "draft_source": sampler.draft_source,
                    "draft_masks": sampler.draft_masks, "draft_max": sampler.draft_max},
        # repair is an edit-mode (mask path) job: the AR baseline has no repair numbers
        "models": {name: evaluate(engine, args, texts, log, repair=not engine.is_ar)},
    }
    if args.ar_model:
        ar = Engine.from_path(args.ar_model, sampler=sampler)
        report["models"]["ar"] = evaluate(ar, args, texts, log, repair=False)
    report["models"].update(merged)
    print(json.dumps(report, indent=2))
    print(table(report), file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table(report) + "\n")
    return 0
