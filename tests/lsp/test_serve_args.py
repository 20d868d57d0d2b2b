"""`diffusion-lsp serve` options that act before the server exists."""

import subprocess
import sys

from lsp_server.cmd_serve import MAX_DEFAULT_THREADS, default_threads


def test_default_threads_respects_omp_and_caps_cores():
    assert default_threads({"OMP_NUM_THREADS": "3"}, 64) is None  # the user chose
    assert default_threads({}, 64) == MAX_DEFAULT_THREADS
    assert default_threads({}, 2) == 2
    assert default_threads({"OMP_NUM_THREADS": ""}, None) == 1


def test_bad_thread_count_is_a_usage_error():
    for bad in ("0", "-2", "many"):
        r = subprocess.run([sys.executable, "-m", "lsp_server", "--threads", bad],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 2, r.stderr
        assert "--threads" in r.stderr and "positive integer" in r.stderr
