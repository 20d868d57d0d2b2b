"""`--changed-since REF` against a real git repository, block progress and Ctrl-C
(issue 20, item 5)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from lsp_server.check.analyze import check_text, count_blocks
from lsp_server.check.changed import ChangedError, changed_since, parse_diff
from tests.check.conftest import check
from tests.check.fakes import PLANTS, PlantedRepairer

BODY = "def total_of(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
         *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    (r / "pkg").mkdir(parents=True)
    (r / "pkg" / "a.py").write_text(BODY + "\n\n" + BODY.replace("total_of", "other"))
    (r / "pkg" / "b.py").write_text(BODY.replace("total_of", "b"))
    (r / "pkg" / "c.py").write_text(BODY.replace("total_of", "c"))
    git(r, "init", "-q", "-b", "main")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "base")
    return r


def test_only_changed_files_and_blocks_go_to_the_model(repo):
    a = repo / "pkg" / "a.py"
    # the second function of a.py gets the planted DL002 typo; the first one is untouched
    text = a.read_text()
    head, _, tail = text.partition("def other")
    a.write_text(head + "def other" + tail.replace("total += x", "total =+ x"))
    # b.py: committed after the base, then broken (syntax) in the working tree
    (repo / "pkg" / "b.py").write_text("def b(xs)\n    return xs\n")
    (repo / "pkg" / "new.py").write_text("total = 0\ntotal =+ 1\n")  # untracked: all lines
    calls: list[str] = []

    @dataclass(frozen=True)
    class Recording:
        def __call__(self):
            return PlantedRepairer(PLANTS, calls=calls)

    run = check(repo, "--format", "json", "--changed-since", "HEAD", factory=Recording())
    assert run.code == 1, run.err
    got = sorted((f["path"], f["rule_id"], f["line"]) for f in run.json["findings"])
    assert got == [("pkg/a.py", "DL002", 11), ("pkg/b.py", "DL001", 1), ("pkg/new.py", "DL002", 2)]
    assert run.json["summary"]["files"] == 3  # c.py is unchanged: not even read
    assert not any("def total_of" in c for c in calls)  # a.py's unchanged block: no model


def test_changed_since_a_ref_lists_committed_changes_too(repo):
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "pkg" / "c.py").write_text(BODY.replace("total_of", "c").replace("+= x", "=+ x"))
    git(repo, "commit", "-q", "-am", "change c")
    ch = changed_since(base, str(repo))
    assert ch.of(str(repo / "pkg" / "c.py")) == frozenset({3})
    assert ch.of(str(repo / "pkg" / "a.py")) is False
    run = check(repo, "--format", "json", "--changed-since", base)
    assert [(f["path"], f["line"]) for f in run.json["findings"]] == [("pkg/c.py", 4)]
    assert check(repo, "--changed-since", "HEAD").code == 0  # nothing changed since HEAD


def test_bad_ref_and_no_repository_are_usage_errors(repo, tmp_path):
    run = check(repo, "--changed-since", "no-such-ref")
    assert run.code == 2 and "--changed-since no-such-ref" in run.err
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.py").write_text("x = 1\n")
    with pytest.raises(ChangedError):
        changed_since("HEAD", str(plain))


def test_parse_diff_marks_added_and_both_sides_of_deletions():
    diff = (
        "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n"
        "@@ -3,0 +4,2 @@\n+a\n+b\n@@ -10 +12,0 @@\n-gone\n@@ -20 +20 @@\n-o\n+n\n"
        "--- a/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
    )
    assert parse_diff(diff) == {"x.py": {3, 4, 11, 12, 19}}


def test_progress_counts_every_block():
    text = BODY + "\n\n" + BODY.replace("total_of", "two") + "\n\nx = 1\n"
    seen = []
    check_text(text, "t.py", "python", PlantedRepairer(), 0.9, on_block=seen.append)
    assert sum(seen) == count_blocks(text, "python") == 3


def test_ctrl_c_prints_the_partial_report(tmp_path):
    (tmp_path / "a.py").write_text("total = 0\ntotal =+ 1\n")
    (tmp_path / "b.py").write_text("x = 1\n")

    @dataclass(frozen=True)
    class Interrupting:
        def __call__(self):
            return _Interrupt()

    run = check(tmp_path, "--format", "json", factory=Interrupting())
    assert run.code == 130
    assert [f["path"] for f in run.json["findings"]] == ["a.py"]
    assert "interrupted: the report covers 1 of 2 files" in run.err


class _Interrupt(PlantedRepairer):
    def repair(self, prefix, block, suffix):
        if "x = 1" in block:
            raise KeyboardInterrupt
        return super().repair(prefix, block, suffix)
