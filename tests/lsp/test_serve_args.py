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


def _python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_server_is_built_without_torch():
    """`initialize` is answered before torch loads (it loads with the model, in the worker):
    on this machine under load 1.3 s to the answer instead of 3.5 s (issue 22)."""
    out = _python("import sys\nfrom lsp_server.server import build_server\n"
                  "from lsp_server.settings import Settings\nbuild_server(Settings())\n"
                  "print('torch' in sys.modules)")
    assert out == "False"


def test_threads_reach_torch_when_it_loads_later():
    """torch reads OMP_NUM_THREADS at import (it caps it at the cores: this machine has 2,
    torch's default there, so the check uses 1)."""
    code = ("import os\nos.environ.pop('OMP_NUM_THREADS', None)\n"
            "from lsp_server.cmd_serve import apply_threads\napply_threads({})\n"
            "import torch\nprint(torch.get_num_threads())")
    assert _python(code.format(1)) == "1"
