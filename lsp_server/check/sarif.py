"""SARIF 2.1.0 output, accepted by GitHub code scanning (upload-sarif).

- Stable rule ids (DL001, DL002) with descriptions, levels and help.
- `partialFingerprints["diffusionLsp/v1"]`: rule + file + whitespace-normalised block +
  proposal + occurrence, so an alert keeps its identity when lines move.
- Regions are 1-based; columns count Unicode code points (`columnKind`), end exclusive.
- The proposed replacement, when there is one, is a SARIF `fix` (its region may differ
  from the result's: a syntax error is located where the parser stops); skipped files
  are tool notifications.
- A sharded run names its category in `automationDetails.id`
  (`diffusion-lsp/shard-K-of-N/`): each shard's file can be uploaded on its own, or the
  shards merged into one run with `merge` (`python -m lsp_server.check.sarif merge ...`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import quote

from lsp_server.check.findings import RULES, Finding
from lsp_server.check.report import Report

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "diffusionLsp/v1"
CATEGORY = "diffusion-lsp"


def _uri(display: str) -> tuple[str, bool]:
    """(uri, relative?) for a display path."""
    if display.startswith("/"):
        return Path(display).as_uri(), False
    return quote(display, safe="/"), True


def _location(display: str) -> dict:
    uri, rel = _uri(display)
    loc = {"uri": uri}
    if rel:
        loc["uriBaseId"] = "%SRCROOT%"
    return loc


def _region(f: Finding) -> dict:
    return {
        "startLine": f.line, "startColumn": f.column,
        "endLine": f.end_line, "endColumn": f.end_column,
    }


def _fix_region(f: Finding) -> dict:
    line, col, end_line, end_col = f.fix_region
    return {"startLine": line, "startColumn": col, "endLine": end_line, "endColumn": end_col}


def _rule(r) -> dict:
    return {
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.short},
        "fullDescription": {"text": r.full},
        "defaultConfiguration": {"level": r.level},
        "help": {"text": r.full, "markdown": r.full},
        "properties": {"tags": ["correctness", "ai-repair"], "precision": "medium",
                       "problem.severity": r.level},
    }


def _result(f: Finding, rule_index: dict[str, int]) -> dict:
    rule = f.rule
    res = {
        "ruleId": rule.id,
        "ruleIndex": rule_index[rule.id],
        "level": rule.level,
        "message": {"text": f.message},
        "locations": [{"physicalLocation": {
            "artifactLocation": _location(f.path), "region": _region(f),
        }}],
        "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
        "properties": {
            "confidence": f.confidence,
            "blockStartLine": f.block_start_line,
            "blockEndLine": f.block_end_line,
        },
    }
    if f.has_fix:
        res["fixes"] = [{
            "description": {"text": "Apply the repair model's proposal"},
            "artifactChanges": [{
                "artifactLocation": _location(f.path),
                "replacements": [{"deletedRegion": _fix_region(f),
                                  "insertedContent": {"text": f.replacement}}],
            }],
        }]
        res["rank"] = round(100.0 * f.confidence, 1)
    return res


def _notification(display: str, text: str, level: str) -> dict:
    return {
        "level": level,
        "message": {"text": f"{display}: {text}"},
        "locations": [{"physicalLocation": {"artifactLocation": _location(display)}}],
    }


def category(shard: tuple[int, int] | None) -> str:
    return CATEGORY if shard is None else f"{CATEGORY}/shard-{shard[0]}-of-{shard[1]}"


def to_sarif(report: Report) -> dict:
    rule_index = {r.id: i for i, r in enumerate(RULES)}
    notes = [_notification(d, f"skipped: {why}", "warning") for d, why in report.skipped]
    notes += [_notification(d, f"internal error: {msg}", "error") for d, msg in report.errors]
    root_uri = Path(os.path.abspath(report.root)).as_uri().rstrip("/") + "/"
    run = {
        "tool": {"driver": {
            "name": "diffusion-lsp",
            "version": report.tool_version,
            "rules": [_rule(r) for r in RULES],
        }},
        "automationDetails": {"id": category(report.shard) + "/"},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": root_uri}},
        "columnKind": "unicodeCodePoints",
        "invocations": [{
            "executionSuccessful": not report.errors,
            "toolExecutionNotifications": notes,
            "properties": {"threshold": report.threshold, "files": report.summary.files,
                           "blocks": report.summary.blocks, "seconds": round(report.summary.seconds, 3)},
        }],
        "results": [_result(f, rule_index) for f in report.findings],
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render(report: Report) -> str:
    return json.dumps(to_sarif(report), indent=2, ensure_ascii=False) + "\n"


def merge(docs: list[dict]) -> dict:
    """Shards of one run -> one SARIF log with one run (the category without the shard):
    results concatenated, notifications concatenated, the first shard's tool and bases."""
    if not docs:
        raise ValueError("nothing to merge")
    runs = [run for d in docs for run in d.get("runs", [])]
    if not runs:
        raise ValueError("the SARIF files hold no runs")
    first = json.loads(json.dumps(runs[0]))
    first["results"] = [res for run in runs for res in run.get("results", [])]
    inv = first.setdefault("invocations", [{"executionSuccessful": True}])[0]
    inv["executionSuccessful"] = all(
        i.get("executionSuccessful", True) for run in runs for i in run.get("invocations", [])
    )
    inv["toolExecutionNotifications"] = [
        n for run in runs for i in run.get("invocations", []) for n in i.get("toolExecutionNotifications", [])
    ]
    inv.pop("properties", None)
    first["automationDetails"] = {"id": CATEGORY + "/"}
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [first]}


def main(argv: list[str] | None = None) -> int:
    """`python -m lsp_server.check.sarif merge OUT.sarif IN.sarif...`"""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[0] != "merge":
        print("usage: python -m lsp_server.check.sarif merge OUT.sarif SHARD.sarif...", file=sys.stderr)
        return 2
    try:
        docs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in argv[2:]]
        merged = merge(docs)
    except (OSError, ValueError) as e:
        print(f"sarif merge: {e}", file=sys.stderr)
        return 2
    Path(argv[1]).write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
