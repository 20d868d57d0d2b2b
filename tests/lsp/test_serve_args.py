"""`diffusion-lsp serve` options that act before the server exists."""

import subprocess
import sys

from lsp_server.cmd_serve import DEFAULT_THREADS, default_threads


def test_default_threads_is_one_unless_omp_is_set():
    """One thread by default: beside another busy process, min(4, cores) threads made one
    completion 40x slower than one thread (issue 22)."""
    assert DEFAULT_THREADS == 1
    assert default_threads({"OMP_NUM_THREADS": "3"}) is None  # the user chose
    assert default_threads({}) == 1
    assert default_threads({"OMP_NUM_THREADS": ""}) == 1


def test_serve_help_names_the_thread_default():
    r = subprocess.run([sys.executable, "-m", "lsp_server", "--help"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "else 1: more threads are slower" in text, text
    assert "cores up to" not in text


def test_bad_thread_count_is_a_usage_error():
    for bad in ("0", "-2", "many"):
        r = subprocess.run([sys.executable, "-m", "lsp_server", "--threads", bad],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 2, r.stderr
        assert "--threads" in r.stderr and "positive integer" in r.stderr
