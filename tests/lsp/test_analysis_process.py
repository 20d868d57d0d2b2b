"""The diagnostics pass in a child process (lsp_server.analysis_process): the same answers
as in the server's own process, a lost child replaced, no child at all tolerated."""

import io
import json
import os

import pytest

from lsp_server import analysis_process as ap
from lsp_server.diagnostics import analyze

BROKEN = "import os\n\ndef f(x)\n    return x + 1\n\nclass A:\n    def g(self):\n        return [1, 2\n"
TYPO = "def area(radius):\n    return 3.14 * radius * radiuss\n"


@pytest.fixture
def proc():
    p = ap.AnalysisProcess()
    yield p
    p.close()


@pytest.mark.parametrize("text", [BROKEN, TYPO, "", "x = 'caf\u00e9 \U0001f600'\n"])
def test_the_child_answers_what_the_server_would(proc, text):
    syntax, sites = analyze(text, "python", True)
    assert (len(syntax), len(sites)) == {BROKEN: (2, 0), TYPO: (0, 1)}.get(text, (0, 0))
    assert proc.analyze(text, "python", True) == analyze(text, "python", True)
    assert proc.served == 1 and proc.failures == 0


def test_a_lost_child_is_replaced(proc):
    proc.analyze(BROKEN, "python", True)
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, proc._child.pid) == min(19, mine + ap.NICE)
    proc._child.kill()
    proc._child.wait()
    assert proc.analyze(TYPO, "python", True) == analyze(TYPO, "python", True)
    assert proc.served == 2


def test_without_a_child_the_pass_runs_here(proc, monkeypatch):
    def cannot(*a, **kw):
        raise OSError("no processes left")

    monkeypatch.setattr(ap, "_start", cannot)
    for _ in range(ap.MAX_FAILURES + 1):
        assert proc.analyze(BROKEN, "python", True) == analyze(BROKEN, "python", True)
    assert proc.served == 0 and not proc.usable


def test_the_workspace_never_reaches_the_childs_imports(proc, tmp_path, monkeypatch):
    fake = tmp_path / "lsp_server"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit('workspace code ran')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert proc.analyze(BROKEN, "python", True) == analyze(BROKEN, "python", True)
    assert proc.served == 1


def test_serve_answers_a_bad_request_and_goes_on():
    good = json.dumps({"text": TYPO, "language": "python", "names": True})
    out = io.StringIO()
    ap.serve(io.StringIO("not json\n" + good + "\n"), out)
    bad, ok = (json.loads(x) for x in out.getvalue().splitlines())
    assert "error" in bad
    assert ap.decode_result(ok) == analyze(TYPO, "python", True)
