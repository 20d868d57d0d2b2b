"""The real `diffusion-lsp check` process with tiny random models: exit codes, formats,
bad input, worker processes, and a SIGKILL in the middle of `--fix`."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusion_core.checkpoint import save_model_dir
from diffusion_core.model import CodeTransformer
from diffusion_core.testing import make_tiny_model_dir, tiny_config, tiny_tokenizer
from lsp_server.check import runner
from lsp_server.check.analyze import check_text
from lsp_server.check.fix import TMP_SUFFIX, fixed_text
from lsp_server.check.repairer import EngineRepairerFactory
from lsp_server.check.runner import RunOptions
from lsp_server.check.walk import Target
from tests.check.conftest import check
from tests.check.sarif_check import validate
from tests.check.tree import HUGE_LIMIT, snapshot, write_tree

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quiet_model(tmp_path_factory) -> Path:
    """The standard tiny test model: it proposes no change to these files."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def noisy_model(tmp_path_factory) -> Path:
    """A tiny model whose proposals are random changes with low confidence."""
    tok = tiny_tokenizer()
    torch.manual_seed(1)
    model = CodeTransformer(tiny_config(tok)).eval()
    with torch.no_grad():
        model.embed_tokens.weight.mul_(3.0)
    path = tmp_path_factory.mktemp("m") / "noisy"
    save_model_dir(model, tok, path)
    return path


def cli(*argv: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "lsp_server.cli", "check", *argv]


def env() -> dict:
    e = dict(os.environ, CI="true")
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*argv, cwd=cwd), cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=300)


def text_files(root: Path, n: int) -> dict[str, str]:
    files = {}
    for i in range(n):
        body = "".join(f"entry {i} {j}\n    value = {i * j}\n" for j in range(4))
        files[f"notes/n{i:03d}.txt"] = body
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    return files


@pytest.mark.slow
def test_cli_clean_run_sarif_and_bad_input(tmp_path, quiet_model):
    tree = write_tree(tmp_path / "tree")
    before = snapshot(tree)
    out = tmp_path / "check.sarif"
    p = run_cli(".", "--model", str(quiet_model), "--format", "sarif", "-o", str(out),
                "--max-file-size", HUGE_LIMIT, cwd=tree)
    # pkg/broken.py does not parse: a DL001 finding (and exit 1) whatever the model can do
    assert p.returncode == 1, p.stderr
    assert p.stdout == ""
    doc = json.loads(out.read_text())
    validate(doc)
    (res,) = doc["runs"][0]["results"]
    assert res["ruleId"] == "DL001" and res["level"] == "error"
    loc = res["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "pkg/broken.py"
    assert loc["region"]["startLine"] == 5
    assert "'(' was never closed" in res["message"]["text"]
    for fix in res.get("fixes", []):  # a fix, when the model has one, makes the file parse
        rep = fix["artifactChanges"][0]["replacements"][0]
        assert parses_with(tree / "pkg/broken.py", rep)
    for bad in ("bad/blob.py: skipped: binary", "bad/latin.py: skipped: cannot decode",
                "bad/huge.py: skipped: file is 12000 bytes", "bad/loop.py: skipped: symlink loop"):
        assert bad in p.stderr
    assert "check: 8 files checked" in p.stderr
    assert "\r" not in p.stderr  # no progress bar in CI
    assert snapshot(tree) == before


def parses_with(path: Path, rep: dict) -> bool:
    """Whether the file parses with one SARIF replacement applied (1-based code points)."""
    import ast

    lines = path.read_text().splitlines(keepends=True)
    r = rep["deletedRegion"]
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    text = "".join(lines)
    a = starts[r["startLine"] - 1] + r["startColumn"] - 1
    b = starts[r["endLine"] - 1] + r["endColumn"] - 1
    try:
        ast.parse(text[:a] + rep["insertedContent"]["text"] + text[b:])
    except SyntaxError:
        return False
    return True


def test_missing_model_is_a_clear_error(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    run = check(tmp_path, "--model", str(tmp_path / "absent"), factory=None)
    assert run.code == 2
    assert "cannot load the model: ModelLoadError: model directory" in run.err


def expected_findings(model: Path, files: dict[str, str]) -> dict[str, list]:
    """What `check --threshold 0` finds, computed with the same model and code in this process."""
    repairer = EngineRepairerFactory(str(model), max_change=100.0)()
    return {rel: check_text(body, rel, "txt", repairer, 0.0).findings for rel, body in files.items()}


def test_engine_worker_finds_what_one_process_finds(tmp_path, noisy_model):
    """The code a --jobs worker runs (factory in the initializer, then one task per file) with
    the real engine; the process pool itself is exercised with the planted repairer."""
    files = text_files(tmp_path, 3)
    # the noisy random model only ever proposes rewrites: let them through
    factory = EngineRepairerFactory(str(noisy_model), threads=1, max_change=100.0)
    assert pickle_free_equal(factory)
    runner._init_worker(factory)
    try:
        got = [runner._work(Target(str(tmp_path / rel), rel), RunOptions(threshold=0.0))
               for rel in files]
    finally:
        runner._worker = (None, None)
    want = expected_findings(noisy_model, files)
    assert [r.findings for r in got] == [want[rel] for rel in files]
    assert all(r.findings and r.findings[0].rule_id == "DL002" for r in got)
    runner._init_worker(EngineRepairerFactory(str(tmp_path / "absent")))
    try:
        bad = runner._work(Target(str(tmp_path / "notes" / "n000.txt"), "n000.txt"), RunOptions())
    finally:
        runner._worker = (None, None)
    assert bad.fatal and "does not exist" in bad.error


def pickle_free_equal(factory: EngineRepairerFactory) -> bool:
    """The factory is a frozen dataclass of plain fields: what spawn can send to a worker."""
    return factory == EngineRepairerFactory(**dataclasses.asdict(factory))


@pytest.mark.slow
def test_sigkill_during_fix_leaves_every_file_whole(tmp_path, noisy_model):
    files = text_files(tmp_path, 60)
    # what a complete fix writes
    found = expected_findings(noisy_model, files)
    expected = {rel: fixed_text(body, found[rel]) for rel, body in files.items()}
    assert sum(expected[r] != files[r] for r in files) == len(files)
    proc = subprocess.Popen(
        cli("notes", "--model", str(noisy_model), "--include", "*.txt", "--threshold", "0",
            "--max-change", "100", "--fix", "--verbose", "--format", "json", cwd=tmp_path),
        cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    fixed_lines = 0
    try:
        for line in proc.stderr:
            if line.rstrip().endswith("(fixed)"):
                fixed_lines += 1
                if fixed_lines == 3:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()
    assert fixed_lines == 3 and proc.returncode == -signal.SIGKILL
    n_fixed = n_orig = 0
    for rel, body in files.items():
        now = (tmp_path / rel).read_text()
        assert now in (body, expected[rel]), f"{rel} is neither original nor fully fixed"
        n_fixed += now == expected[rel]
        n_orig += now == body
    assert n_fixed >= 3 and n_orig >= 1, (n_fixed, n_orig)
    leftovers = [p.name for p in (tmp_path / "notes").iterdir() if not p.name.endswith(".txt")]
    assert all(name.endswith(TMP_SUFFIX) for name in leftovers)
