"""Diffusion against the same-size autoregressive model: tokens/s at measured quality.

Both models fill the same holes with the same context through `Engine.infill`: HumanEval
multi-line infilling tasks (pass@1 by running the tests, exact match) and spans of 1-3
lines cut from held-out code (exact match). Speed is decoding throughput: generated tokens
(up to <eoi>) over the time spent after the context is encoded (sampling, re-encoding
finished blocks, detokenizing), the way the Seed Diffusion paper states it; end-to-end
tokens/s (context encoding included) is reported beside it. A sweep over confidence
threshold and block size gives the speed-quality Pareto curve.

    python -m dlsp_benchmarks.speed --model DIR --ar-model AR_DIR [--humaneval 164 --profile]

For a joint model (one network with a causal and a mask path, issue 19) the benchmark
also compares draft-and-verify decoding against the same network's plain greedy
decoding, hole by hole in the same process (so the two share the machine's load): the
outputs must be identical, and the figures are tokens per forward pass and the ratio of
decoding tokens/s, for every draft setting of `--draft-grid`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Engine
from dlsp_benchmarks import humaneval
from dlsp_benchmarks.machine import machine_info
from dlsp_benchmarks.report import model_label, source_files, write_json

TARGET_SPEEDUP = 5.4
TARGET_MAX_PASS1_DROP = 0.01  # one point of pass@1


@dataclass
class Item:
    source: str  # "humaneval" or "heldout"
    prefix: str
    suffix: str
    target: str
    task: humaneval.InfillTask | None = None


# -- inputs -------------------------------------------------------------------------------
def heldout_spans(texts: list[str], n: int, seed: int) -> list[Item]:
    """n holes of 1-3 whole lines cut from `texts` (deterministic in seed)."""
    rng = random.Random(seed)
    texts = [t for t in texts if t.count("\n") >= 12]
    out: list[Item] = []
    for _ in range(n * 20):
        if len(out) >= n or not texts:
            break
        lines = rng.choice(texts).splitlines(keepends=True)
        i = rng.randrange(4, len(lines) - 4)
        k = rng.randint(1, 3)
        target = "".join(lines[i : i + k])
        if len(target.strip()) < 8:
            continue
        out.append(Item("heldout", "".join(lines[:i]), "".join(lines[i + k :]), target))
    return out


def heldout_texts(model: str | None, dirs: list[str] | None) -> tuple[list[str], str]:
    """Held-out files: given dirs, else the model's training.json split, else our own source."""
    from diffusion_core.checkpoint import DEFAULT_MODEL_DIR
    from dlsp_benchmarks.quality import heldout_texts as split_texts

    fraction = 0.02
    if dirs is None:
        record = (Path(model) if model else DEFAULT_MODEL_DIR) / "training.json"
        if record.exists():
            rec = json.loads(record.read_text())
            dirs = rec.get("data_dirs") or None
            fraction = rec.get("heldout_fraction", fraction)
    if dirs:
        return split_texts(dirs, fraction), f"held-out split of {dirs} (fraction {fraction})"
    texts = [p.read_text(encoding="utf-8") for p in source_files()]
    return texts, "the project's own source (not in the training data)"


def load_items(args: argparse.Namespace) -> tuple[list[Item], str]:
    items = [Item("humaneval", t.prompt, t.suffix, t.canonical_solution, t)
             for t in humaneval.load_tasks("multi_line", args.humaneval)] if args.humaneval else []
    note = ""
    if args.heldout:
        texts, note = heldout_texts(args.model, args.heldout_dirs)
        items += heldout_spans(texts, args.heldout, args.seed)
    if not items:
        raise ValueError("nothing to generate: give --humaneval and/or --heldout > 0")
    return items, note


# -- generation ---------------------------------------------------------------------------
def generate(engine: Engine, items: list[Item], sampler: SamplerConfig, max_tokens: int) -> dict:
    """Fill every item's hole; speed, steps and the completions (one warm-up call first)."""
    engine.infill(items[0].prefix, items[0].suffix, max_tokens=max_tokens, sampler=sampler)
    texts: list[str] = []
    tokens = steps = committed = 0
    gen_ms = total_ms = 0.0
    for it in items:
        out = engine.infill(it.prefix, it.suffix, max_tokens=max_tokens, sampler=sampler)
        texts.append(out.text)
        tokens += len(out.tokens)
        steps += out.stats.steps
        committed += out.stats.tokens
        total_ms += out.total_ms
        gen_ms += out.total_ms - out.stats.encode_ms
    return {
        "texts": texts, "tokens": tokens, "steps": steps,
        "tok_s": round(tokens / (gen_ms / 1000), 2) if gen_ms else None,
        "tok_s_end_to_end": round(tokens / (total_ms / 1000), 2) if total_ms else None,
        "tokens_per_request": round(tokens / len(items), 2),
        "ms_per_request": round(total_ms / len(items), 2),
        # all committed positions (stop-token fill included) and the useful share of them
        "committed_tokens_per_step": round(committed / steps, 3) if steps else None,
        "output_tokens_per_step": round(tokens / steps, 3) if steps else None,
    }


def score(items: list[Item], texts: list[str]) -> dict:
    he = [(it, tx) for it, tx in zip(items, texts, strict=True) if it.task is not None]
    pass1 = None
    if he:
        pass1, _ = humaneval.pass_rate([it.task for it, _ in he], [tx for _, tx in he])
    def exact(src: str) -> float | None:
        pairs = [(it, tx) for it, tx in zip(items, texts, strict=True) if it.source == src]
        if not pairs:
            return None
        return round(sum(tx.strip() == it.target.strip() for it, tx in pairs) / len(pairs), 4)

    return {"pass1": pass1, "humaneval_exact_match": exact("humaneval"),
            "heldout_exact_match": exact("heldout")}


def evaluate(engine: Engine, items: list[Item], sampler: SamplerConfig, max_tokens: int) -> dict:
    r = generate(engine, items, sampler, max_tokens)
    r.update(score(items, r.pop("texts")))
    r["model"] = str(engine.loaded.path)
    r["kind"] = engine.model.cfg.kind
    r["parameters"] = engine.model.num_parameters()
    return r


def draft_vs_greedy(engine: Engine, items: list[Item], base: SamplerConfig, grid: list[tuple],
                    max_tokens: int, log) -> dict:
    """Greedy decoding against draft and verify at every (masks, max draft, source) of
    `grid`, interleaved hole by hole; identical outputs are checked, not assumed."""
    samplers = {"greedy": base.replace(decoder="greedy")}
    for masks, dmax, source in grid:
        samplers[f"draft m={masks} d={dmax} {source}"] = base.replace(
            decoder="draft", draft_masks=masks, draft_max=dmax, draft_source=source)
    engine.infill(items[0].prefix, items[0].suffix, max_tokens=max_tokens, sampler=base)  # warm-up
    acc = {k: {"texts": [], "tokens": 0, "steps": 0, "gen_ms": 0.0, "drafted": 0, "accepted": 0,
               "ms": []} for k in samplers}
    for it in items:
        for k, sc in samplers.items():
            out = engine.infill(it.prefix, it.suffix, max_tokens=max_tokens, sampler=sc)
            a = acc[k]
            a["texts"].append(out.text)
            a["tokens"] += len(out.tokens)
            a["steps"] += out.stats.steps
            a["gen_ms"] += out.total_ms - out.stats.encode_ms
            a["ms"].append(out.total_ms - out.stats.encode_ms)
            a["drafted"] += out.stats.drafted
            a["accepted"] += out.stats.accepted
    ref = acc["greedy"]
    ref_tok_s = ref["tokens"] / (ref["gen_ms"] / 1000) if ref["gen_ms"] else None
    rows = []
    for k, a in acc.items():
        tok_s = a["tokens"] / (a["gen_ms"] / 1000) if a["gen_ms"] else None
        # per-hole time ratios: robust to a slow stretch of the machine
        ratios = sorted(r / max(1e-9, m) for r, m in zip(ref["ms"], a["ms"], strict=True))
        rows.append({
            "decoder": k, "tok_s": round(tok_s, 2) if tok_s else None,
            "speedup": round(tok_s / ref_tok_s, 3) if tok_s and ref_tok_s else None,
            "median_hole_speedup": round(ratios[len(ratios) // 2], 3) if ratios else None,
            "tokens_per_forward": round(a["tokens"] / a["steps"], 3) if a["steps"] else None,
            "acceptance": round(a["accepted"] / a["drafted"], 3) if a["drafted"] else None,
            "identical_to_greedy": a["texts"] == ref["texts"],
        })
        log(f"speed: {k}: {rows[-1]['tok_s']} tok/s, x{rows[-1]['speedup']}, "
            f"{rows[-1]['tokens_per_forward']} tokens/forward, identical {rows[-1]['identical_to_greedy']}")
    return {"holes": len(items), "greedy_tok_s": round(ref_tok_s, 2) if ref_tok_s else None,
            "rows": rows}


def _grid(text: str) -> tuple[int, int, str]:
    try:
        masks, dmax, source = text.split(":")
        return int(masks), int(dmax), source
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected MASKS:MAX_DRAFT:SOURCE, got {text!r}") from e


def sweep(engine: Engine, items: list[Item], base: SamplerConfig, thresholds: list[float],
          block_sizes: list[int], max_tokens: int, log) -> list[dict]:
    """Speed and pass@1 of the diffusion model at every (threshold, block size)."""
    points = []
    for b in block_sizes:
        for thr in thresholds:
            sc = base.replace(threshold=thr, block_size=b)
            r = generate(engine, items, sc, max_tokens)
            q = score(items, r["texts"])
            points.append({"threshold": thr, "block_size": b, "tok_s": r["tok_s"],
                           "tok_s_end_to_end": r["tok_s_end_to_end"],
                           "output_tokens_per_step": r["output_tokens_per_step"],
                           "pass1": q["pass1"] or 0.0, "exact_match": q["humaneval_exact_match"]})
            log(f"speed: sweep B={b} t={thr}: {r['tok_s']} tok/s, pass@1 {q['pass1']}")
    return points


# -- command line ---------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speed")
    g.add_argument("--humaneval", type=int, default=164,
                   help="HumanEval multi-line infilling tasks, evenly spaced subset (164)")
    g.add_argument("--heldout", type=int, default=100, help="held-out code holes (100)")
    g.add_argument("--heldout-dirs", nargs="*", default=None,
                   help="source dirs whose held-out split to use (default: the model's "
                        "training.json, else the project's own source)")
    g.add_argument("--gen-tokens", type=int, default=160,
                   help="max tokens per multi-line hole, as in `diffusion-lsp eval` (160)")
    g.add_argument("--sweep-thresholds", type=float, nargs="*", default=[0.5, 0.7, 0.8, 0.9, 0.95, 1.0],
                   help="thresholds of the Pareto sweep")
    g.add_argument("--sweep-block-sizes", type=int, nargs="*", default=[8, 16, 32, 64],
                   help="block sizes of the Pareto sweep")
    g.add_argument("--sweep-tasks", type=int, default=40,
                   help="HumanEval tasks per sweep point (the first N of the set; 0: no sweep)")
    g.add_argument("--draft-grid", type=_grid, nargs="*",
                   default=[(0, 3, "ngram"), (2, 1, "diffusion"), (3, 2, "diffusion"), (4, 3, "diffusion"),
                            (6, 5, "diffusion"), (4, 3, "both")],
                   help="joint models: draft settings compared with greedy decoding, each "
                        "MASKS:MAX_DRAFT:SOURCE (mask rows per forward, most draft tokens verified, "
                        "diffusion|ngram|both)")
    g.add_argument("--profile", action="store_true",
                   help="print where diffusion decoding time goes (attention, LM head, MLP, "
                        "tokenization, Python overhead; cProfile and torch.profiler tables)")


def run(args: argparse.Namespace) -> int:
    from dlsp_benchmarks import plots
    from dlsp_benchmarks.options import prepare, sampler_from_args

    prepare(args)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    base = sampler_from_args(args)
    items, heldout_note = load_items(args)
    log(f"speed: {len(items)} holes ({sum(i.task is not None for i in items)} HumanEval)")
    t0 = time.time()
    diff = Engine.from_path(args.model, device=args.device, sampler=base)
    if diff.is_ar:
        raise ValueError(f"--model {args.model} is an autoregressive model; give it as --ar-model")
    d = evaluate(diff, items, base, args.gen_tokens)
    log(f"speed: diffusion {d['tok_s']} tok/s, pass@1 {d['pass1']}")
    a = None
    if args.ar_model:
        ar = Engine.from_path(args.ar_model, device=args.device, sampler=base)
        if not ar.is_ar:
            raise ValueError(f"--ar-model {args.ar_model} is not an autoregressive model (kind 'ar')")
        a = evaluate(ar, items, base, args.gen_tokens)
        log(f"speed: autoregressive {a['tok_s']} tok/s, pass@1 {a['pass1']}")
    spec = None
    if diff.model.cfg.kind == "joint" and args.draft_grid:
        spec = draft_vs_greedy(diff, items, base, args.draft_grid, args.gen_tokens, log)
    he_items = [i for i in items if i.task is not None][: args.sweep_tasks]
    points = []
    if he_items and args.sweep_tasks and diff.model.cfg.kind == "diffusion":
        points = sweep(diff, he_items, base, args.sweep_thresholds, args.sweep_block_sizes,
                       args.gen_tokens, log)
    result = summarize(args, base, d, a, points, len(items), heldout_note)
    result["draft_vs_greedy"] = spec
    if args.profile:
        from dlsp_benchmarks.profiling import profile_engine

        result["profile"] = profile_engine(diff, items[: max(1, min(5, len(items)))], base,
                                           args.gen_tokens, log)
    result["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out_dir)
    write_json(out / "speed.json", result)
    plots.pareto_plot(result, out / "speed_pareto.png")
    if spec is not None:
        plots.draft_plot(result, out / "speed_draft.png")
    log(f"speed: speedup {result['speedup']} -> {out / 'speed.json'}")
    return 0


def summarize(args, base: SamplerConfig, d: dict, a: dict | None, points: list[dict],
              n_items: int, heldout_note: str) -> dict:
    speedup = round(d["tok_s"] / a["tok_s"], 2) if a and a["tok_s"] and d["tok_s"] else None
    drop = None
    if a and d["pass1"] is not None and a["pass1"] is not None:
        drop = round(a["pass1"] - d["pass1"], 4)
    return {
        "benchmark": "speed",
        "machine": machine_info(args.threads),
        "model": model_label(args.model),
        "ar_model": args.ar_model,
        "note": None if a else "no --ar-model given: diffusion side only",
        "sampler": {"block_size": base.block_size, "threshold": base.threshold,
                    "fallback": base.fallback, "max_tokens": args.gen_tokens,
                    "decoder": base.decoder, "draft_masks": base.draft_masks,
                    "draft_max": base.draft_max, "draft_source": base.draft_source},
        "holes": n_items, "heldout_source": heldout_note,
        "diffusion_tok_s": d["tok_s"], "ar_tok_s": a["tok_s"] if a else None,
        "speedup": speedup,
        "diffusion_tok_s_end_to_end": d["tok_s_end_to_end"],
        "ar_tok_s_end_to_end": a["tok_s_end_to_end"] if a else None,
        "speedup_end_to_end": (round(d["tok_s_end_to_end"] / a["tok_s_end_to_end"], 2)
                               if a and a["tok_s_end_to_end"] else None),
        "diffusion_pass1": d["pass1"], "ar_pass1": a["pass1"] if a else None,
        "pass1_drop": drop,
        "diffusion_exact_match": {"humaneval": d["humaneval_exact_match"],
                                  "heldout": d["heldout_exact_match"]},
        "ar_exact_match": ({"humaneval": a["humaneval_exact_match"],
                            "heldout": a["heldout_exact_match"]} if a else None),
        "tokens_per_step": d["output_tokens_per_step"],
        "committed_tokens_per_step": d["committed_tokens_per_step"],
        "targets": {
            "speedup_at_least_5.4x": None if speedup is None else speedup >= TARGET_SPEEDUP,
            "pass1_at_most_1_point_lower":
                None if drop is None else drop <= TARGET_MAX_PASS1_DROP + 1e-9,
        },
        "diffusion": d, "ar": a,
        "sweep": points,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    from dlsp_benchmarks.options import standalone

    return standalone("python -m dlsp_benchmarks.speed", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
