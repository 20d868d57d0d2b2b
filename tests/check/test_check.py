"""`check` end to end in-process, with a repairer whose proposals are planted."""

from __future__ import annotations

import pytest

from lsp_server.check.fix import TMP_SUFFIX
from lsp_server.check.runner import show_progress
from lsp_server.check.walk import in_shard
from tests.check.conftest import check
from tests.check.fakes import BrokenFactory, PlantedFactory
from tests.check.tree import (
    BROKEN_FIXED,
    EXPECTED_SKIPS,
    HUGE_LIMIT,
    TYPO,
    TYPO_FIXED,
    snapshot,
)

LIMIT = ("--max-file-size", HUGE_LIMIT)


def by_path(findings):
    return {(f["path"], f["rule_id"]): f for f in findings}


def test_planted_findings_and_skips(tree):
    run = check(tree, "--format", "json", *LIMIT)
    assert run.code == 1, run.err
    doc = run.json
    got = by_path(doc["findings"])
    assert set(got) == {
        ("pkg/typo.py", "DL002"), ("pkg/broken.py", "DL001"), ("pkg/uni.py", "DL002"),
    }
    typo = got[("pkg/typo.py", "DL002")]
    # "total =+ x" is on line 4; the minimal edit swaps "=+" for "+=" at column 15
    assert (typo["line"], typo["column"], typo["end_line"], typo["end_column"]) == (4, 15, 4, 17)
    assert (typo["original"], typo["replacement"]) == ("=+", "+=")
    assert typo["confidence"] == pytest.approx(0.97)
    assert typo["rule_name"] == "suspicious-code" and typo["level"] == "warning"
    assert (typo["block_start_line"], typo["block_end_line"]) == (1, 5)
    syn = got[("pkg/broken.py", "DL001")]
    # reported where CPython points: the "(" that is never closed
    assert (syn["line"], syn["column"], syn["end_line"], syn["end_column"]) == (5, 12, 5, 12)
    assert syn["message"].startswith("syntax error: '(' was never closed; fix: insert ')'")
    # the fix is an insertion: empty range right after "return (x + 1"
    assert (syn["original"], syn["replacement"]) == ("", ")")
    sug = syn["suggestion"]
    assert (sug["line"], sug["column"], sug["end_line"], sug["end_column"]) == (5, 18, 5, 18)
    assert syn["confidence"] == pytest.approx(0.55)  # below --threshold: syntax fixes always count
    # columns count code points; the CRLF line keeps its numbering
    uni = got[("pkg/uni.py", "DL002")]
    assert (uni["line"], uni["column"], uni["original"]) == (2, 25, "=+")
    skipped = {s["path"]: s["reason"] for s in doc["skipped"]}
    for path, why in EXPECTED_SKIPS.items():
        assert why in skipped.get(path, ""), (path, skipped)
    assert "bad/cookie.py" not in skipped  # PEP 263 cookie honoured
    assert not any(p.startswith(("ignored/", "pkg/sub/local_")) for p, _ in got)
    assert doc["summary"]["findings"] == 3
    assert doc["summary"]["files"] == 8  # 6 in pkg/, pkg/sub/kept.py, bad/cookie.py
    assert "check: 8 files checked" in run.err and "3 findings" in run.err
    assert "warning: bad/blob.py: skipped: binary file" in run.err


def test_threshold_controls_model_findings(tree):
    low = check(tree, "--format", "json", "--threshold", "0.4", *LIMIT).json
    assert ("pkg/low.py", "DL002") in by_path(low["findings"])
    high = check(tree, "--format", "json", "--threshold", "0.98", *LIMIT).json
    assert set(by_path(high["findings"])) == {("pkg/broken.py", "DL001")}


def test_text_format_has_location_and_diff(tree):
    run = check(tree, *LIMIT)
    assert run.code == 1
    assert "pkg/typo.py:4:15: DL002 suspicious-code the model proposes a change: replace '=+' with '+='" in run.out
    assert "    @@ -1,5 +1,5 @@" in run.out  # block diff with the file's own line numbers
    assert "    -        total =+ x\n    +        total += x\n" in run.out
    assert "pkg/broken.py:5:" in run.out and "DL001 syntax-error" in run.out


def test_github_annotations(tree):
    run = check(tree, "--format", "github", *LIMIT)
    lines = run.out.splitlines()
    warn = [x for x in lines if x.startswith("::warning file=pkg/typo.py,")]
    assert len(warn) == 1
    assert warn[0].startswith(
        "::warning file=pkg/typo.py,line=4,endLine=4,col=15,endColumn=17,title=DL002 suspicious-code::"
    )
    assert "\n" not in warn[0] and "%0Asuggested fix%3A" not in warn[0]
    assert "%0Asuggested fix at 4:15-4:17: replace '=+' with '+='" in warn[0]
    assert any(x.startswith("::error file=pkg/broken.py,line=5,") for x in lines)
    assert any(x.startswith("::notice file=bad/blob.py,") for x in lines)


def test_fix_applies_only_findings_and_leaves_the_rest_byte_identical(tree):
    before = snapshot(tree)
    run = check(tree, "--fix", *LIMIT)
    assert run.code == 0, run.err  # every finding fixed
    after = snapshot(tree)
    assert after.pop("pkg/typo.py") == TYPO_FIXED.encode()
    assert after.pop("pkg/broken.py") == BROKEN_FIXED.encode()
    assert after.pop("pkg/uni.py") == before["pkg/uni.py"].replace(b"=+ 1", b"+= 1")
    for key in ("pkg/typo.py", "pkg/broken.py", "pkg/uni.py"):
        before.pop(key)
    assert after == before  # everything else, skipped and ignored files included
    assert not any(k.endswith(TMP_SUFFIX) for k in after)
    assert "3 fixed" in run.err
    again = check(tree, "--format", "json", *LIMIT)
    assert again.code == 0 and again.json["findings"] == []


def test_fix_keeps_file_mode_and_symlinks(tree):
    typo = tree / "pkg" / "typo.py"
    typo.chmod(0o640)
    link = tree / "pkg" / "alias.py"
    link.symlink_to("typo.py")
    run = check(tree, "--fix", *LIMIT, paths=[str(link)])
    assert run.code == 0, run.err
    assert link.is_symlink() and typo.read_text() == TYPO_FIXED
    assert typo.stat().st_mode & 0o777 == 0o640


def test_fix_skips_a_file_changed_since_it_was_read(tree):
    target = tree / "pkg" / "typo.py"
    edited = TYPO + "\n# edited meanwhile\n"

    class EditingFactory(PlantedFactory):
        def __call__(self):
            inner = super().__call__()

            class Editing:
                def fits(self, block):
                    return True

                def repair(self, prefix, block, suffix):
                    target.write_text(edited)  # someone saves the file while we check it
                    return inner.repair(prefix, block, suffix)

            return Editing()

    run = check(tree, "--fix", "--format", "json", paths=[str(target)], factory=EditingFactory())
    assert run.code == 1  # the finding is still there
    assert target.read_text() == edited
    assert run.json["findings"][0]["fix"] == "not fixed: changed since it was checked; not fixed"
    assert "changed since it was checked" in run.err


def test_diff_prints_and_writes_nothing(tree):
    before = snapshot(tree)
    run = check(tree, "--diff", *LIMIT)
    assert run.code == 1
    assert "--- a/pkg/typo.py\n+++ b/pkg/typo.py\n" in run.out
    assert "-        total =+ x\n+        total += x\n" in run.out
    assert snapshot(tree) == before


def test_exit_codes(tree, tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "a.py").write_text("def a():\n    return 1\n")
    assert check(clean).code == 0
    assert check(clean, paths=[str(clean / "nope.py")]).code == 2
    assert check(clean, "--threshold", "1.5").code == 2
    for bad in ("0/3", "4/3", "x"):
        r = check(clean, "--shard", bad)
        assert r.code == 2 and "--shard" in r.err
    r = check(clean, factory=BrokenFactory())
    assert r.code == 2 and "cannot load the model" in r.err
    r = check(tree, "--format", "json", *LIMIT, factory=PlantedFactory(fail_on="def unrelated"))
    assert r.code == 2  # internal error on one file, the others still checked
    assert [e["path"] for e in r.json["errors"]] == ["pkg/typo.py"]
    assert ("pkg/broken.py", "DL001") in by_path(r.json["findings"])
    assert check(tmp_path / "clean", paths=[str(clean)], factory=BrokenFactory()).code == 2


def test_empty_selection_needs_no_model(tmp_path):
    (tmp_path / "README.md").write_text("hello\n")
    assert check(tmp_path, factory=BrokenFactory()).code == 0


def test_shards_partition_the_files(tree):
    full = check(tree, "--format", "json", *LIMIT).json
    seen, findings = [], []
    for k in (1, 2, 3):
        doc = check(tree, "--format", "json", "--shard", f"{k}/3", *LIMIT).json
        findings += doc["findings"]
        seen += [f["path"] for f in doc["findings"]] + [s["path"] for s in doc["skipped"]]
    assert sorted(map(str, findings)) == sorted(map(str, full["findings"]))
    assert len(seen) == len(set(seen))  # no file in two shards
    assert in_shard("pkg/typo.py", (1, 1))
    picks = [k for k in (1, 2, 3) if in_shard("pkg/typo.py", (k, 3))]
    assert len(picks) == 1


def test_jobs_match_serial(tree):
    serial = check(tree, "--format", "json", *LIMIT).json
    parallel = check(tree, "--format", "json", "--jobs", "2", *LIMIT).json
    assert parallel["findings"] == serial["findings"]
    assert parallel["skipped"] == serial["skipped"]


def test_include_exclude_and_no_gitignore(tree):
    doc = check(tree, "--format", "json", "--include", "*.txt", *LIMIT).json
    assert [f["path"] for f in doc["findings"]] == ["pkg/notes.txt"]
    doc = check(tree, "--format", "json", "--exclude", "pkg/typo.py", "--exclude", "bad/", *LIMIT).json
    assert {f["path"] for f in doc["findings"]} == {"pkg/broken.py", "pkg/uni.py"}
    assert doc["skipped"] == []
    doc = check(tree, "--format", "json", "--no-gitignore", "--exclude", "bad/").json
    paths = {f["path"] for f in doc["findings"]}
    assert {"ignored/bad.py", "pkg/sub/local_junk.py"} <= paths


def test_symlinked_directory_loop_is_reported_not_followed_forever(tree):
    run = check(tree, "--format", "json", "--follow-symlinks", *LIMIT)
    assert run.code == 1
    reasons = {s["path"]: s["reason"] for s in run.json["skipped"]}
    assert "symlink loop" in reasons.get("pkg/sub/up", "")
    assert len(run.json["findings"]) == 3  # each real file once


def test_unreadable_file_is_skipped(tree, monkeypatch):
    """A file without read permission, injected (CI runs as root, which reads any file):
    opening it fails with EACCES; it is skipped with that reason, the others are checked."""
    import builtins
    import errno
    import os

    from lsp_server.check import analyze

    p = tree / "pkg" / "typo.py"
    real = builtins.open

    def denied(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and os.path.samefile(file, p):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(analyze, "open", denied, raising=False)
    run = check(tree, "--format", "json", *LIMIT)
    assert {s["path"]: s["reason"] for s in run.json["skipped"]}["pkg/typo.py"] == "permission denied"
    assert run.json["findings"]  # the other files were checked


def test_output_file_and_fingerprints_are_stable(tree):
    out = tree.parent / "report.json"
    run = check(tree, "--format", "json", "-o", str(out), *LIMIT)
    assert run.code == 1 and run.out == ""
    import json

    first = {f["fingerprint"] for f in json.loads(out.read_text())["findings"]}
    # moving the code down does not change the identity of the findings
    typo = tree / "pkg" / "typo.py"
    typo.write_text("# a new comment\n\n" + typo.read_text())
    second = {f["fingerprint"] for f in check(tree, "--format", "json", *LIMIT).json["findings"]}
    assert first == second
    assert len(first) == 3 and all(len(x) == 32 for x in first)


def test_progress_only_on_a_terminal_outside_ci(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("CI", raising=False)
    assert show_progress(Tty())
    monkeypatch.setenv("CI", "true")
    assert not show_progress(Tty())
    monkeypatch.delenv("CI")

    class Pipe:
        def isatty(self):
            return False

    assert not show_progress(Pipe())


def test_blocks_that_do_not_fit_are_counted_not_sent(tree):
    calls: list[str] = []

    class Small(PlantedFactory):
        def __call__(self):
            from tests.check.fakes import PlantedRepairer

            return PlantedRepairer(self.plants, max_chars=60, calls=calls)

    run = check(tree, "--format", "json", factory=Small(), paths=[str(tree / "pkg" / "typo.py")])
    assert all(len(b) <= 60 for b in calls)
    assert calls and run.json["summary"]["long_blocks"] >= 1
