"""HumanEval-Infilling tasks from ../shared/eval (read-only; never training data).

A completion passes when `prompt + completion + suffix + test + check(entry_point)` exits
0 in a separate Python process under a timeout (the format's own rule, see the README of
shared/eval).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SHARED_EVAL = Path(__file__).resolve().parents[1].parent / "shared" / "eval"
FILES = {
    "single_line": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi_line": "HumanEval-MultiLineInfilling.jsonl.gz",
    "random_span_light": "HumanEval-RandomSpanInfillingLight.jsonl.gz",
}


@dataclass(frozen=True)
class InfillTask:
    task_id: str
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str


def eval_dir() -> Path:
    return Path(os.environ.get("DIFFUSION_LSP_EVAL_DIR", SHARED_EVAL))


def load_tasks(kind: str, limit: int | None = None) -> list[InfillTask]:
    """Tasks of one benchmark; `limit` keeps an evenly spaced, deterministic subset."""
    path = eval_dir() / FILES[kind]
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: HumanEval data lives in ../shared/eval")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    tasks = [InfillTask(**{k: r[k] for k in InfillTask.__dataclass_fields__}) for r in rows]
    if limit and limit < len(tasks):
        step = len(tasks) / limit
        tasks = [tasks[int(i * step)] for i in range(limit)]
    return tasks


def program(task: InfillTask, completion: str) -> str:
    return task.prompt + completion + task.suffix + "\n" + task.test + f"\ncheck({task.entry_point})\n"


def passes(task: InfillTask, completion: str, timeout: float = 5.0) -> bool:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "prog.py"
        path.write_text(program(task, completion))
        try:
            r = subprocess.run(
                [sys.executable, "-I", str(path)], cwd=d, capture_output=True, timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0


def pass_rate(tasks: list[InfillTask], completions: list[str], workers: int = 2) -> tuple[float, list[bool]]:
    with ThreadPoolExecutor(workers) as ex:
        ok = list(ex.map(passes, tasks, completions))
    return (sum(ok) / len(ok) if ok else 0.0), ok


# The evenly spaced subset the README and issue 19 quote (`load_tasks(kind, REPORTED)`).
# A run over more tasks also reports the rest of them apart: checkpoints are chosen on the
# rest (a dev split) and the subset is reported, so the reported rate is not a selection.
REPORTED = 200


def split_rates(tasks: list[InfillTask], ok: list[bool], reported: set[str]) -> dict | None:
    """Pass@1 on the `reported` task ids and on the other tasks, when `tasks` hold all of
    `reported` and more (else None: the run is the subset itself, or misses part of it)."""
    inside = [good for t, good in zip(tasks, ok, strict=True) if t.task_id in reported]
    outside = [good for t, good in zip(tasks, ok, strict=True) if t.task_id not in reported]
    if len(inside) != len(reported) or not outside:
        return None
    return {"reported": {"tasks": len(inside), "passed": sum(inside), "pass@1": sum(inside) / len(inside)},
            "rest": {"tasks": len(outside), "passed": sum(outside), "pass@1": sum(outside) / len(outside)}}
