"""Report renderers: text (default), json, jsonl, github (workflow commands), sarif.

Each takes a `Report` and returns the whole stdout text. Concatenating shards:
text, jsonl and github outputs concatenate as they are; json gives one document per
shard (`jq -s` merges them); sarif has its own `merge` (see sarif.py).
"""

from __future__ import annotations

import json

from lsp_server.check import sarif
from lsp_server.check.report import Report

FORMATS = ("text", "json", "jsonl", "sarif", "github")


def render(fmt: str, report: Report, *, show_diff: bool = True) -> str:
    if fmt == "text":
        return render_text(report, show_diff=show_diff)
    if fmt == "json":
        return json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        return render_jsonl(report)
    if fmt == "sarif":
        return sarif.render(report)
    if fmt == "github":
        return render_github(report)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def render_text(report: Report, *, show_diff: bool = True) -> str:
    out = []
    for f in report.findings:
        rule = f.rule
        status = report.fix_status.get(f.path)
        tail = f" [{status}]" if status else ""
        out.append(f"{f.path}:{f.line}:{f.column}: {rule.id} {rule.name} {f.message}{tail}\n")
        if show_diff and f.diff:
            out.append("".join("    " + line for line in f.diff.splitlines(keepends=True)))
    return "".join(out)


def _summary_dict(report: Report) -> dict:
    s = report.summary
    return {
        "files": s.files, "skipped": s.skipped, "errors": s.errors, "blocks": s.blocks,
        "long_blocks": s.long_blocks, "unrepaired_syntax_errors": s.unrepaired_syntax_errors,
        "findings": s.findings, "fixed": s.fixed, "seconds": round(s.seconds, 3),
    }


def to_json(report: Report) -> dict:
    return {
        "version": 1,
        "tool": {"name": "diffusion-lsp", "version": report.tool_version},
        "threshold": report.threshold,
        "shard": list(report.shard) if report.shard else None,
        "findings": [_finding_dict(report, f) for f in report.findings],
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
        "errors": [{"path": p, "error": e} for p, e in report.errors],
        "summary": _summary_dict(report),
    }


def _finding_dict(report: Report, f) -> dict:
    d = f.to_dict()
    if f.path in report.fix_status:
        d["fix"] = report.fix_status[f.path]
    return d


def render_jsonl(report: Report) -> str:
    lines = [{"type": "finding", **_finding_dict(report, f)} for f in report.findings]
    lines += [{"type": "skipped", "path": p, "reason": r} for p, r in report.skipped]
    lines += [{"type": "error", "path": p, "error": e} for p, e in report.errors]
    return "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)


def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def render_github(report: Report) -> str:
    """GitHub Actions workflow commands: one annotation per finding, notices for skips."""
    out = []
    for f in report.findings:
        rule = f.rule
        props = (
            f"file={_escape_prop(f.path)},line={f.line},endLine={f.end_line},"
            f"col={f.column},endColumn={f.end_column},title={_escape_prop(f'{rule.id} {rule.name}')}"
        )
        body = f.message
        if f.has_fix:
            line, col, end_line, end_col = f.fix_region
            body += (f"\nsuggested fix at {line}:{col}-{end_line}:{end_col}: replace "
                     f"{f.original!r} with {f.replacement!r}")
        out.append(f"::{rule.level} {props}::{_escape_data(body)}\n")
    for path, reason in report.skipped:
        out.append(f"::notice file={_escape_prop(path)},title=diffusion-lsp skipped::{_escape_data(reason)}\n")
    for path, msg in report.errors:
        out.append(f"::error file={_escape_prop(path)},title=diffusion-lsp failed::{_escape_data(msg)}\n")
    return "".join(out)
