"""A bounded soak in the CI suite: a seeded random session of thousands of edits,
completions, code actions and cancellations across many documents (benchmarks/soak.py).

After every step the server's copy of each touched document must equal the client's,
every request must have been answered, and the server's RSS must stay under its size
after the model load + the cache budget + a fixed margin. `python -m dlsp_benchmarks.soak`
runs the same session longer.
"""

from __future__ import annotations

import json
import os

from dlsp_benchmarks.soak import run_soak

STEPS = int(os.environ.get("SOAK_STEPS", "4000"))


def test_soak_keeps_documents_in_sync_answers_everything_and_bounds_memory(tiny_model, tmp_path):
    report = run_soak(tiny_model, steps=STEPS, docs=10, seed=20261123, cache_budget_mb=0.05,
                      margin_mb=150.0, max_seconds=150.0, cache_dir=str(tmp_path / "cache"))
    out = report.to_json()
    print(json.dumps(out, indent=1))  # visible with -s; numbers for docs/reliability.md
    assert report.steps >= min(STEPS, 500), out  # the time cap did not cut it short
    assert report.requests == report.answered and report.state_checks >= report.steps
    assert report.edits > STEPS // 3 and report.completions > STEPS // 10, out
    assert report.cancellations > 0 and report.resolves > 0, out
    assert report.cache["evictions"] > 0 and report.cache["spills"] > 0, out
    assert report.max_rss_mb <= report.limit_mb
    # no leak: flat after warm-up (pygls' kept futures grew it by ~4.6 MB per 1000 steps)
    assert report.growth_mb_per_1000_steps < 1.5, out
