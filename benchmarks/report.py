"""Shared pieces of the benchmarks: percentiles, JSON output, the benchmark document.

The benchmark document is the project's own Python source (diffusion_core, lsp_server,
cache, benchmarks), concatenated in path order and repeated or cut to the wanted number of
lines. It is real code, it ships with the repository (so every machine measures the same
text), and it is not in the training data (the Python 3.11 standard library and
site-packages); docs/benchmarks/README.md explains the choice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("diffusion_core", "lsp_server", "cache", "benchmarks")  # folders, not import names
DEFAULT_OUT_DIR = Path("docs") / "benchmarks"


def percentiles(values: Iterable[float]) -> dict:
    """n, mean, min, p50, p95, p99, max (nearest-rank; None everywhere for no values)."""
    xs = sorted(float(v) for v in values)
    if not xs:
        return {"n": 0, "mean": None, "min": None, "p50": None, "p95": None, "p99": None,
                "max": None}

    def rank(q: float) -> float:
        return round(xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))], 2)

    return {"n": len(xs), "mean": round(sum(xs) / len(xs), 2), "min": round(xs[0], 2),
            "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": round(xs[-1], 2)}


def write_json(path: str | Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def source_files(root: Path = ROOT) -> list[Path]:
    files: list[Path] = []
    for pkg in SOURCE_PACKAGES:
        files.extend(sorted((root / pkg).rglob("*.py")))
    if not files:
        raise FileNotFoundError(f"no project sources under {root} to build the benchmark document")
    return files


def benchmark_document(lines: int, root: Path = ROOT) -> str:
    """Exactly `lines` lines of the project's own Python source (repeated when needed)."""
    if lines < 1:
        raise ValueError(f"lines must be >= 1, got {lines}")
    chunks: list[str] = []
    for p in source_files(root):
        chunks.append(f"# ---- {p.relative_to(root).as_posix()} ----\n")
        chunks.extend(line + "\n" for line in p.read_text(encoding="utf-8").splitlines())
    out: list[str] = []
    while len(out) < lines:
        out.extend(chunks[: lines - len(out)])
    return "".join(out)


def model_label(path: str | None) -> str:
    return str(path) if path else "embedded default model (diffusion_core/default_model)"
