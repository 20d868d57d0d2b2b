"""Each benchmark runs end to end through `diffusion-lsp bench ... --smoke` on tiny models.

Smoke sizes measure nothing; these tests check that the pipelines (a real server over stdio
for latency, both engines for speed, the cache store for scaling) run and that the JSON
carries the keys the docs and the lead's final run rely on.
"""

from __future__ import annotations

import json

import pytest

from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Engine
from diffusion_core.testing import make_tiny_model_dir
from dlsp_benchmarks import humaneval
from dlsp_benchmarks.plots import pareto_front
from dlsp_benchmarks.profiling import profile_engine
from dlsp_benchmarks.report import benchmark_document, percentiles
from dlsp_benchmarks.speed import Item
from lsp_server.cli import main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench-models")
    return make_tiny_model_dir(d / "diffusion"), make_tiny_model_dir(d / "ar", kind="ar")


def _bench(which: str, out, *extra: str) -> dict:
    rc = main(["bench", which, "--smoke", "--threads", "1", "--out-dir", str(out), *extra])
    assert rc == 0
    return json.loads((out / f"{which}.json").read_text())


def _png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latency_through_a_real_client(models, tmp_path):
    r = _bench("latency", tmp_path, "--model", str(models[0]))
    for key in ("p50_ms_warm", "p95_ms_warm", "p99_ms_warm", "p50_ms_cold", "p50_ms_jump",
                "cancelled_or_superseded_share", "tokens_per_request", "server_status",
                "targets", "machine"):
        assert key in r, key
    assert r["p50_ms_cold"] > 0
    # the last key of every line is awaited, so each kind has served requests
    assert r["latency_ms"]["warm"]["n"] >= 1 and r["latency_ms"]["jump"]["n"] >= 1
    # non-empty answers are a subset of the served ones, kind by kind
    for kind, stats in r["latency_ms_nonempty"].items():
        assert stats["n"] <= r["latency_ms"][kind]["n"]
    assert r["typing_requests"] == 4
    assert r["server_status"]["model"]["kind"] == "diffusion"
    assert r["machine"]["server_threads"] == 1 and r["machine"]["cpu_model"]
    _png(tmp_path / "latency.png")


def test_latency_budget_reaches_the_server(models, tmp_path):
    # a budget of 1 us runs out in every request's first denoising step
    r = _bench("latency", tmp_path, "--model", str(models[0]), "--cold-runs", "0", "--budget-ms", "0.001",
               "--setting", "nameDiagnostics=false")
    assert r["config"]["budget_ms"] == 0.001
    assert r["config"]["settings"] == [["nameDiagnostics", False]]
    warm = r["server_side_warm"]
    assert warm["steps"]["max"] == 1 and 0 < warm["out_of_time_share"] <= 1
    # each request: handler (queue included) >= job >= engine, so their percentiles too
    for q in ("p50", "p95", "max"):
        assert warm["server_ms"][q] >= warm["job_ms"][q] >= warm["engine_ms"][q] > 0


def test_latency_of_invoked_jumps_includes_the_reranking(tmp_path):
    joint = make_tiny_model_dir(tmp_path / "joint", kind="joint")
    r = _bench("latency", tmp_path, "--model", str(joint), "--cold-runs", "0", "--invoke-jumps",
               "--setting", "completionCandidates=3")
    assert r["config"]["invoke_jumps"] is True
    jump = r["server_side_jump"]
    # each jump's last job is the single-line one, reranked among the greedy line and 3 more
    assert jump["candidates"]["n"] >= 1 and 1 <= jump["candidates"]["min"] <= jump["candidates"]["max"] <= 4
    assert jump["rerank_ms"]["min"] > 0


def test_training_curve_plot(tmp_path):
    from dlsp_benchmarks.training_curve import HERE, main

    assert main([str(HERE / "training_curve.json"), str(tmp_path / "curve.png")]) == 0
    _png(tmp_path / "curve.png")


def test_speed_diffusion_against_ar(models, tmp_path):
    if not (humaneval.eval_dir() / humaneval.FILES["multi_line"]).exists():
        pytest.skip("HumanEval data (../shared/eval) is not here")
    r = _bench("speed", tmp_path, "--model", str(models[0]), "--ar-model", str(models[1]))
    for key in ("diffusion_tok_s", "ar_tok_s", "speedup", "diffusion_pass1", "ar_pass1",
                "tokens_per_step", "sweep", "machine"):
        assert key in r, key
    assert r["diffusion_tok_s"] > 0 and r["ar_tok_s"] > 0 and r["speedup"] > 0
    assert r["ar"]["kind"] == "ar" and r["ar"]["output_tokens_per_step"] == 1.0
    assert len(r["sweep"]) == 1 and r["note"] is None
    _png(tmp_path / "speed_pareto.png")


def test_speed_joint_draft_and_verify_against_its_own_greedy(tmp_path):
    if not (humaneval.eval_dir() / humaneval.FILES["multi_line"]).exists():
        pytest.skip("HumanEval data (../shared/eval) is not here")
    joint = make_tiny_model_dir(tmp_path / "joint", kind="joint")
    r = _bench("speed", tmp_path / "out", "--model", str(joint))
    spec = r["draft_vs_greedy"]
    assert [row["decoder"] for row in spec["rows"]] == [
        "greedy", "draft m=2 d=1 diffusion", "draft m=0 d=2 ngram"]
    assert all(row["identical_to_greedy"] for row in spec["rows"])
    assert all(row["tokens_per_forward"] >= 1.0 for row in spec["rows"])
    assert r["diffusion"]["kind"] == "joint" and r["sweep"] == []
    _png(tmp_path / "out" / "speed_draft.png")


def test_profile_split(models):
    """--profile's split (torch.profiler's slow first start is left out here)."""
    e = Engine.from_path(models[0], sampler=SamplerConfig(block_size=8))
    item = Item("heldout", "def add(a, b):\n    ", "\n", "return a + b")
    logged = []
    p = profile_engine(e, [item], e.sampler, 8, logged.append, torch_profiler=False)
    parts = p["split_ms"]
    assert set(parts) == {"attention", "mlp", "lm_head", "embeddings+norms", "tokenization",
                          "sampler+python overhead"}
    assert parts["attention"] > 0 and parts["lm_head"] > 0 and parts["tokenization"] > 0
    assert sum(parts.values()) == pytest.approx(p["wall_ms"], rel=0.02)
    assert "tottime" in p["cprofile_top"] and logged
    assert e.tokenizer is e.loaded.tokenizer  # the timing wrapper was taken off again


def test_scaling_rows(models, tmp_path):
    r = _bench("scaling", tmp_path, "--model", str(models[0]))
    assert [row["lines"] for row in r["rows"]] == [50, 150]
    for row in r["rows"]:
        assert row["cold_ms"]["p50"] > 0 and row["warm_ms"]["p50"] > 0
        assert row["warm_reused_tokens"] > 0  # typing reuses the cached blocks
    _png(tmp_path / "scaling.png")


def test_helpers():
    assert benchmark_document(1234).count("\n") == 1234
    p = percentiles([5, 1, 4, 2, 3])
    assert (p["p50"], p["p95"], p["max"], p["n"]) == (3, 5, 5, 5)
    assert percentiles([])["p50"] is None
    pts = [{"tok_s": 10, "pass1": 0.5}, {"tok_s": 20, "pass1": 0.4}, {"tok_s": 5, "pass1": 0.3}]
    assert pareto_front(pts) == pts[:2]
