"""Quality evaluation and latency/speed benchmarks (not part of the timed test suite)."""
