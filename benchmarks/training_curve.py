"""Plot the training curve of each recipe: HumanEval single-line pass@1 and held-out
next-token NLL against training tokens (issue 19's measured curve).

    python -m dlsp_benchmarks.training_curve [docs/benchmarks/training_curve.json] [OUT.png]

The points are collected by hand from `diffusion-lsp eval` reports (the JSON says where
each comes from); this module only draws them, with the 10% pass@1 bar.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dlsp_benchmarks.plots import _pyplot, _save

HERE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
BAR = 0.10  # issue 19's pass@1 bar


def curve_plot(data: dict, path: str | Path) -> Path:
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, s in enumerate(data["series"]):
        pts = sorted(s["points"], key=lambda p: p["tokens"])
        x = [p["tokens"] / 1e6 for p in pts]
        ax.plot(x, [100 * p["pass_at_1"] for p in pts], "o-", color=f"C{i}", label=s["recipe"])
        nll = [(p["tokens"] / 1e6, p["heldout_nll"]) for p in pts if p["heldout_nll"] is not None]
        if nll:
            bx.plot(*zip(*nll, strict=True), "o-", color=f"C{i}", label=s["recipe"])
    ax.axhline(100 * BAR, color="grey", ls="--", lw=1, label="issue 19 bar (10%)")
    ax.set(xlabel="training tokens (M)", ylabel="HumanEval single-line pass@1 (%)",
           title="pass@1 (200 tasks, greedy)", ylim=(0, 100 * BAR * 1.2))
    bx.set(xlabel="training tokens (M)", ylabel="nats / middle token",
           title="held-out next-token NLL (causal path)")
    ax.legend(fontsize=7, loc="upper left")
    bx.legend(fontsize=7)
    for a in (ax, bx):
        a.grid(alpha=0.3)
    return _save(fig, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else HERE / "training_curve.json"
    out = Path(argv[1]) if len(argv) > 1 else src.with_suffix(".png")
    print(curve_plot(json.loads(src.read_text()), out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
