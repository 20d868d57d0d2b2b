"""PNG plots of the benchmark results (matplotlib, Agg backend; the `bench` extra)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError as e:
        raise RuntimeError("plots need matplotlib: pip install 'diffusion-lsp[bench]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def latency_plot(result: dict, path: str | Path) -> Path:
    """Left: latency CDF of served warm / jump / cold requests. Right: every typing request."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    samples = result["samples"]
    colors = {"warm": "tab:blue", "jump": "tab:orange", "cold": "tab:red"}
    for kind, color in colors.items():
        xs = sorted(s["ms"] for s in samples
                    if s["kind"] == kind and s["outcome"] == "served" and s["ms"] is not None)
        if xs:
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", color=color, label=f"{kind} (n={len(xs)})")
    for q, style in (("p50_ms_warm", "--"), ("p95_ms_warm", ":")):
        if result.get(q) is not None:
            ax.axvline(result[q], color="tab:blue", linestyle=style, linewidth=0.8,
                       label=f"warm {q.split('_')[0]} {result[q]:.0f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of served requests")
    ax.set_title("completion latency through the LSP client")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    typing = [s for s in samples if s["ms"] is not None]
    markers = {"served": "o", "superseded": "x", "cancelled": "x", "error": "s"}
    from matplotlib.lines import Line2D

    handles = []
    for outcome, marker in markers.items():
        pts = [(i, s["ms"]) for i, s in enumerate(typing) if s["outcome"] == outcome]
        if pts:
            bx.scatter(*zip(*pts, strict=True), marker=marker, s=14,
                       c=[colors[typing[i]["kind"]] for i, _ in pts])
            handles.append(Line2D([], [], marker=marker, linestyle="", color="gray", label=outcome))
    handles += [Line2D([], [], marker="o", linestyle="", color=c, label=k) for k, c in colors.items()]
    bx.set_yscale("log")
    bx.set_xlabel("request number")
    bx.set_ylabel("answer time (ms)")
    share = result.get("cancelled_or_superseded_share")
    bx.set_title(f"every request; superseded or cancelled while typing: {share}")
    bx.legend(handles=handles, fontsize=8)
    bx.grid(True, alpha=0.3)
    fig.suptitle(_subtitle(result), fontsize=8)
    return _save(fig, path)


def pareto_plot(result: dict, path: str | Path) -> Path:
    """Speed (tokens/s) against quality (pass@1) over thresholds and block sizes, AR as a star."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    pts = result.get("sweep", [])
    if pts:
        xs = [p["tok_s"] for p in pts]
        ys = [100 * p["pass1"] for p in pts]
        sc = ax.scatter(xs, ys, c=[p["block_size"] for p in pts], cmap="viridis", s=30)
        fig.colorbar(sc, ax=ax, label="block size")
        for p, x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(f"t={p['threshold']:g}", (x, y), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
        front = pareto_front(pts)
        ax.plot([p["tok_s"] for p in front], [100 * p["pass1"] for p in front], "-",
                color="tab:green", linewidth=1, label="diffusion Pareto front")
    if result.get("ar_tok_s") is not None:
        ax.scatter([result["ar_tok_s"]], [100 * result["ar_pass1"]], marker="*", s=160,
                   color="tab:red", label="autoregressive")
    if result.get("diffusion_tok_s") is not None:
        ax.scatter([result["diffusion_tok_s"]], [100 * result["diffusion_pass1"]], marker="D",
                   s=50, color="black", label="diffusion (default sampler)")
    ax.set_xscale("log")
    ax.set_xlabel("decoding tokens / second (log scale)")
    ax.set_ylabel("HumanEval multi-line infilling pass@1 (%)")
    ax.set_title("speed against quality")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(_subtitle(result), fontsize=8)
    return _save(fig, path)


def draft_plot(result: dict, path: str | Path) -> Path:
    """Draft and verify against greedy decoding of the same network: tokens per forward
    pass and decoding speed-up, one bar pair per draft setting."""
    plt = _pyplot()
    rows = result["draft_vs_greedy"]["rows"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r["decoder"] for r in rows]
    ax.barh(names, [r["tokens_per_forward"] or 0 for r in rows], color="tab:blue")
    ax.axvline(1.0, color="gray", linewidth=0.8)
    ax.set_xlabel("tokens per forward pass")
    ax.set_title("tokens committed per forward")
    colors = ["tab:green" if r["identical_to_greedy"] else "tab:red" for r in rows]
    bx.barh(names, [r["speedup"] or 0 for r in rows], color=colors)
    bx.axvline(1.0, color="gray", linewidth=0.8)
    bx.set_xlabel("decoding tokens/s relative to greedy (green: identical output)")
    bx.set_title("speed-up over the same network's greedy decoding")
    for a in (ax, bx):
        a.grid(True, axis="x", alpha=0.3)
        a.tick_params(axis="y", labelsize=7)
    fig.suptitle(_subtitle(result), fontsize=8)
    return _save(fig, path)


def pareto_front(points: list[dict]) -> list[dict]:
    """Points no other point beats on both tokens/s and pass@1, by increasing speed."""
    front = [p for p in points if not any(
        q["tok_s"] >= p["tok_s"] and q["pass1"] >= p["pass1"]
        and (q["tok_s"] > p["tok_s"] or q["pass1"] > p["pass1"]) for q in points)]
    return sorted(front, key=lambda p: p["tok_s"])


def scaling_plot(result: dict, path: str | Path) -> Path:
    """Median latency against document length, one line per block size, warm and cold."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = result["rows"]
    for b in sorted({r["block_size"] for r in rows}):
        rs = sorted((r for r in rows if r["block_size"] == b), key=lambda r: r["lines"])
        xs = [r["lines"] for r in rs]
        ax.plot(xs, [r["warm_ms"]["p50"] for r in rs], "o-", label=f"warm, B={b}")
        ax.plot(xs, [r["cold_ms"]["p50"] for r in rs], "s--", label=f"cold, B={b}")
        bx.plot(xs, [r["tokenize_ms"] for r in rs], "o-", label=f"tokenize context, B={b}")
        bx.plot(xs, [r["warm_ms"]["p50"] - r["tokenize_ms"] for r in rs], "x:",
                label=f"warm minus tokenize, B={b}")
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("document length (lines, log scale)")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    ax.set_ylabel("completion latency p50 (ms)")
    ax.set_title("latency against document length")
    bx.set_ylabel("ms")
    bx.set_title("where the growth goes")
    fig.suptitle(_subtitle(result), fontsize=8)
    return _save(fig, path)


def _subtitle(result: dict) -> str:
    m = result.get("machine", {})
    return (f"{result.get('model', '')} | {m.get('cpu_model')} x{m.get('cores')} | "
            f"torch {m.get('torch')} ({m.get('torch_threads')} threads) | {m.get('timestamp')}")
