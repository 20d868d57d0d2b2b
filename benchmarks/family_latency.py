"""CPU per-step latency of the laptop-size diffusion families at their real shapes (issue 21).

For each checkpoint shape (random weights of the exact config: hidden size, layers,
heads, KV heads, head size, MLP size, vocabulary, tied embeddings, shifted logits) the
network is built in fp32 on the CPU, and then quantized to dynamic int8 in place
(`diffusion_core.quantize`). One denoising step of T = 4, 8 and 32 positions is timed
against a 512-token cached context (random keys/values of the real shape: the cost of
attention does not depend on their values), the LM head computed at every row as the
threshold sampler does; T = 1 is the autoregressive decode step of the same network.
Median of a few repetitions after one warm-up; the fp32 and int8 networks take turns
inside each repetition, so a change in the machine's load slows both alike.

From these: the number of steps an AR decode needs for a 32-token completion (32 steps of
T = 1), and the break-even point of a diffusion step: a step over T positions must commit
t(T) / t(1) tokens to be as fast as AR decoding. The weights are random, so nothing here
says anything about quality: that needs the real checkpoints, which cannot be downloaded
on this machine.

Cold start: the smallest shape is also written as a bf16 safetensors file and loaded back
through the loader's weight path (`safe_open`, memory-mapped, one tensor at a time,
converted to fp32 as it is read), with the file in the page cache.

    nice -n 15 env OMP_NUM_THREADS=1 python -m dlsp_benchmarks.family_latency --out docs/benchmarks

Writes family_latency.json, family_latency.md and family_latency.png into --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from diffusion_core.hf_loader import _build, hf_model_config, memory_estimate, parameter_count
from diffusion_core.kv_cache import KVCache
from diffusion_core.model import CodeTransformer
from diffusion_core.quantize import quantized_linear
from dlsp_benchmarks.machine import machine_info

# The published config.json values of each checkpoint's backbone (Qwen2.5-Coder-0.5B,
# Qwen3-0.6B, Qwen2.5-1.5B-Instruct, Qwen3-1.7B), under the family's model_type.
QWEN = {
    "vocab_size": 151936,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
SHAPES = {
    "a2d-qwen2 0.5B (Qwen2.5-Coder-0.5B bd3lm; open-dcoder-0.5B same shape)": {
        **QWEN,
        "model_type": "a2d-qwen2",
        "hidden_size": 896,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "intermediate_size": 4864,
        "rope_theta": 1000000.0,
    },
    "a2d-qwen3 0.6B (Qwen3-0.6B-diffusion-bd3lm)": {
        **QWEN,
        "model_type": "a2d-qwen3",
        "hidden_size": 1024,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 3072,
        "rope_theta": 1000000.0,
    },
    "Fast_dLLM_Qwen 1.5B (Fast_dLLM_v2_1.5B)": {
        **QWEN,
        "model_type": "Fast_dLLM_Qwen",
        "hidden_size": 1536,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "intermediate_size": 8960,
        "bd_size": 32,
        "rope_theta": 1000000.0,
    },
    "sdar 1.7B (SDAR-1.7B-Chat)": {
        **QWEN,
        "model_type": "sdar",
        "hidden_size": 2048,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 6144,
        "rope_theta": 1000000.0,
    },
}
STEP_SIZES = (1, 4, 8, 32)
CONTEXT = 512
AR_TOKENS = 32


def random_cache(model: CodeTransformer, n: int, seed: int = 0) -> KVCache:
    """A cache of n positions with the model's real shapes (and the hidden-state entry of
    shifted models)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    keys, values = [], []
    for _ in range(cfg.n_layers):
        keys.append(torch.randn(1, cfg.n_kv_heads, n, cfg.head_dim, generator=g))
        values.append(torch.randn(1, cfg.n_kv_heads, n, cfg.head_dim, generator=g))
    if cfg.shifted_logits:
        keys.append(torch.randn(1, 1, n, cfg.d_model, generator=g))
        values.append(torch.zeros(1, 1, n, 0))
    return KVCache(tuple(keys), tuple(values))


def int8_twin(model: CodeTransformer) -> CodeTransformer:
    """The int8 network of `model` (`diffusion_core.quantize.quantized_linear` for every Linear)
    that shares its embedding and norms with it: two networks in memory for the price of
    one and a quarter, so that both can be timed in turns."""
    with torch.device("meta"):
        twin = CodeTransformer(model.cfg)
    for name, module in model.named_modules():
        if not name:
            continue
        parent, _, leaf = name.rpartition(".")
        holder = twin.get_submodule(parent) if parent else twin
        if type(module) is nn.Linear:
            setattr(holder, leaf, quantized_linear(module))
        elif not list(module.children()):  # embedding, norms: shared
            setattr(holder, leaf, module)
    return twin.eval()


def build_random(cfg) -> CodeTransformer:
    with torch.device("meta"):
        model = CodeTransformer(cfg)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    return model.eval()


@torch.inference_mode()
def time_steps(
    models: dict[str, CodeTransformer], cache: KVCache, reps: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Median ms of one forward of T mask positions after `cache` (logits at every row), for
    every model and T: (CPU time, wall time). The models take turns inside each repetition,
    so that a machine whose load changes over the run slows them alike.

    CPU time (`time.process_time`, one thread) is the figure reported: on a shared machine
    the wall time also counts the time other processes hold the core, and on an idle core
    the two agree (memory-bandwidth contention from other processes still shows in both)."""
    cpu: dict[str, dict[int, list[float]]] = {m: {t: [] for t in STEP_SIZES} for m in models}
    wall: dict[str, dict[int, list[float]]] = {m: {t: [] for t in STEP_SIZES} for m in models}
    for rep in range(reps + 1):  # the first round is the warm-up
        for t in STEP_SIZES:
            for name, model in models.items():
                ids = torch.full((1, t), model.cfg.mask_token_id, dtype=torch.long)
                pos = torch.arange(cache.length, cache.length + t)[None]
                select = torch.ones(1, t, dtype=torch.bool)
                c0, w0 = time.process_time(), time.perf_counter()
                model(ids, pos, None, cache, select=select)
                if rep:
                    cpu[name][t].append((time.process_time() - c0) * 1000)
                    wall[name][t].append((time.perf_counter() - w0) * 1000)

    def med(d):
        return {
            m: {str(t): round(statistics.median(v), 1) for t, v in ts.items()}
            for m, ts in d.items()
        }

    return med(cpu), med(wall)


def cold_start(cfg, model: CodeTransformer) -> dict:
    """Write the weights as bf16 safetensors, then load them back through the loader's path."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "model.safetensors"
        state = {
            f"model.{k}": v.to(torch.bfloat16).contiguous()
            for k, v in model.state_dict().items()
            if not (cfg.tie_embeddings and k == "lm_head.weight")
        }
        save_file(state, str(f), metadata={"format": "pt"})
        size = f.stat().st_size
        del state
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        loaded = _build(cfg, [f], cfg.family, torch.device("cpu"), torch.float32)
        ms = (time.perf_counter() - t0) * 1000
        cpu_ms = (time.process_time() - c0) * 1000
        del loaded
        gc.collect()
    return {
        "file_bytes": size,
        "load_ms_fp32_from_bf16": round(ms, 1),
        "load_cpu_ms_fp32_from_bf16": round(cpu_ms, 1),
    }


def run(out: Path, reps: int, only: list[str] | None) -> dict:
    torch.manual_seed(0)
    results = []
    for i, (name, raw) in enumerate(SHAPES.items()):
        if only and not any(o in name for o in only):
            continue
        cfg = hf_model_config(raw, mask_token_id=151665, pad_token_id=151643)
        print(
            f"[{name}] {parameter_count(cfg) / 1e9:.2f} B parameters, fp32 weights "
            f"{memory_estimate(cfg, torch.float32) / 2**30:.1f} GiB",
            file=sys.stderr,
            flush=True,
        )
        t0 = time.perf_counter()
        model = build_random(cfg)
        build_s = time.perf_counter() - t0
        cache = random_cache(model, CONTEXT)
        row = {
            "shape": name,
            "model_type": raw["model_type"],
            "parameters": parameter_count(cfg),
            "shifted_logits": cfg.shifted_logits,
            "trained_block_size": cfg.trained_block_size,
            "weights_gib": {
                "fp32": round(memory_estimate(cfg, torch.float32) / 2**30, 2),
                "bf16": round(memory_estimate(cfg, torch.bfloat16) / 2**30, 2),
            },
            "build_s": round(build_s, 1),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        }
        if i == 0:
            row["cold_start"] = cold_start(cfg, model)
        t0 = time.perf_counter()
        int8 = int8_twin(model)
        row["quantize_s"] = round(time.perf_counter() - t0, 1)
        gc.collect()
        row["step_ms"], row["wall_ms"] = time_steps({"fp32": model, "int8": int8}, cache, reps)
        row["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(f"  cpu {row['step_ms']}\n  wall {row['wall_ms']}", file=sys.stderr, flush=True)
        fp, q = row["step_ms"]["fp32"], row["step_ms"]["int8"]
        row["int8_speedup"] = {t: round(fp[t] / q[t], 2) for t in fp}
        row["ar_32_tokens_ms"] = {
            m: round(AR_TOKENS * row["step_ms"][m]["1"], 1) for m in ("fp32", "int8")
        }
        row["break_even_tokens_per_step"] = {
            m: {
                t: round(row["step_ms"][m][t] / row["step_ms"][m]["1"], 2) for t in ("4", "8", "32")
            }
            for m in ("fp32", "int8")
        }
        results.append(row)
        del model, int8, cache
        gc.collect()
    doc = {
        "benchmark": "family_latency",
        "context_tokens": CONTEXT,
        "step_sizes": list(STEP_SIZES),
        "repetitions": reps,
        "statistic": "median",
        "ar_tokens": AR_TOKENS,
        "machine": machine_info(),
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "family_latency.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "family_latency.md").write_text(markdown(doc))
    plot(doc, out / "family_latency.png")
    return doc


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# Per-step CPU latency of the block-diffusion families (random weights, real shapes)",
        "",
        f"Machine: {m.get('cpu_model', '?')}, torch {m.get('torch', '?')}, "
        f"{m.get('torch_threads', '?')} thread(s), load average {m.get('load_average', '?')} "
        "(a training run and other jobs shared the two cores). "
        f"One step = one forward of T mask positions against a {doc['context_tokens']}-token cached "
        "context, logits at every row; T = 1 is an AR decode step. Median of "
        f"{doc['repetitions']} runs after a warm-up, CPU time of the one thread (what the step "
        "costs on an idle core; this machine was shared, so its wall times, kept in the JSON, are "
        "higher by the share of the core other processes took). Produced by "
        "`python -m dlsp_benchmarks.family_latency`.",
        "",
        "| shape | params | weights fp32 / bf16 | mode | T=1 (AR) ms | T=4 ms | T=8 ms | T=32 ms | "
        f"AR {doc['ar_tokens']} tokens ms | break-even tokens/step at T=8 / 32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        for mode in ("fp32", "int8"):
            s = r["step_ms"][mode]
            be = r["break_even_tokens_per_step"][mode]
            lines.append(
                f"| {r['shape']} | {r['parameters'] / 1e9:.2f} B | {r['weights_gib']['fp32']} / "
                f"{r['weights_gib']['bf16']} GiB | {mode} | {s['1']} | {s['4']} | {s['8']} | {s['32']} | "
                f"{r['ar_32_tokens_ms'][mode]} | {be['8']} / {be['32']} |"
            )
    lines += [
        "",
        "int8 speed-up per step (fp32 ms / int8 ms):",
        "",
        "| shape | T=1 | T=4 | T=8 | T=32 |",
        "|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        s = r["int8_speedup"]
        lines.append(f"| {r['shape']} | {s['1']}x | {s['4']}x | {s['8']}x | {s['32']}x |")
    cold = next((r for r in doc["results"] if "cold_start" in r), None)
    if cold:
        c = cold["cold_start"]
        lines += [
            "",
            f"Cold start ({cold['shape']}): {c['file_bytes'] / 2**30:.2f} GiB bf16 safetensors "
            f"loaded into fp32 in {c['load_cpu_ms_fp32_from_bf16'] / 1000:.1f} s of CPU time "
            f"({c['load_ms_fp32_from_bf16'] / 1000:.1f} s wall on the shared machine; memory-mapped "
            "`safe_open`, file in the page cache).",
        ]
    lines += [
        "",
        "Break-even: a diffusion step of T positions is only faster than AR decoding if it "
        "commits more than t(T)/t(1) tokens. Quality is not measured: the weights are random.",
    ]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, r in enumerate(doc["results"]):
        for mode, style in (("fp32", "-o"), ("int8", "--s")):
            xs = [int(t) for t in r["step_ms"][mode]]
            ax.plot(
                xs,
                list(r["step_ms"][mode].values()),
                style,
                color=f"C{i}",
                label=f"{r['shape'].split(' (')[0]} {mode}",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(STEP_SIZES), [str(t) for t in STEP_SIZES])
    ax.set_xlabel(
        f"positions per step (T=1: AR decode step), {doc['context_tokens']}-token cached context"
    )
    ax.set_ylabel("CPU ms per step (median, 1 thread)")
    ax.set_title("Per-step CPU latency, random weights at the real shapes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.inference_mode()
def recompute(out: Path, reps: int, block: int = 32) -> dict:
    """What an exact cache costs a bidirectional model (open-dcoder, Dream, LLaDA): every
    denoising step re-runs the whole context with the block (CONTEXT + block positions, no
    cache) instead of the block against cached keys/values. Measured at the 0.5B shape."""
    name, raw = next(iter(SHAPES.items()))
    cfg = hf_model_config({**raw, "model_type": "qwen2", "mask_token_id": 151665})
    model = build_random(cfg)
    cache = random_cache(model, CONTEXT)
    n = CONTEXT + block
    ids = torch.full((1, n), cfg.mask_token_id, dtype=torch.long)
    sel = torch.zeros(1, n, dtype=torch.bool)
    sel[:, CONTEXT:] = True
    cached, full = [], []
    for rep in range(reps + 1):
        t0 = time.process_time()
        model(ids[:, CONTEXT:], torch.arange(CONTEXT, n)[None], None, cache)
        t1 = time.process_time()
        model(ids, torch.arange(n)[None], None, None, select=sel)
        t2 = time.process_time()
        if rep:
            cached.append((t1 - t0) * 1000)
            full.append((t2 - t1) * 1000)
    doc = {
        "shape": name,
        "block": block,
        "context_tokens": CONTEXT,
        "repetitions": reps,
        "cached_step_cpu_ms": round(statistics.median(cached), 1),
        "full_recompute_step_cpu_ms": round(statistics.median(full), 1),
        "machine": machine_info(),
    }
    doc["ratio"] = round(doc["full_recompute_step_cpu_ms"] / doc["cached_step_cpu_ms"], 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "family_latency_recompute.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "machine"}), file=sys.stderr)
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"), help="output directory")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per step size (median)")
    p.add_argument("--only", nargs="*", help="run only the shapes whose name contains one of these")
    p.add_argument(
        "--recompute",
        action="store_true",
        help="only measure a cached step against a full re-encode of context + block "
        "(what an exact cache would cost a bidirectional model), at the 0.5B shape",
    )
    args = p.parse_args(argv)
    if args.recompute:
        recompute(args.out, args.reps)
    else:
        run(args.out, args.reps, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
