"""The cache benchmark runs end to end (tiny preset, two keystrokes) and reports JSON."""

import json

import pytest

from dlsp_benchmarks import cache_bench


@pytest.mark.slow
def test_cache_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    rc = cache_bench.main([
        "--preset", "tiny", "--keystrokes", "2", "--max-tokens", "4", "--no-worst-case",
        "--out", str(out),
    ])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["outputs_equal"] is True and r["file"]["lines"] > 1500
    assert r["context_tokens"] > 20 * r["sampler"]["block_size"]
    assert all(0 < e <= r["sampler"]["block_size"] for e in r["warm_encoded_tokens"])
    assert r["store"]["restores"] >= 1
    for key in ("cold_ms", "warm_ms", "encode_cold_ms", "encode_warm_ms"):
        assert r[key]["median"] > 0
    assert r["encode_speedup_median"] > 1
