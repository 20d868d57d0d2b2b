"""Everything one run reports, independent of the output format."""

from __future__ import annotations

from dataclasses import dataclass, field

from lsp_server.check.findings import FileResult, Finding
from lsp_server.check.runner import Summary


@dataclass
class Report:
    results: list[FileResult]
    summary: Summary
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (display, reason), walk + read
    errors: list[tuple[str, str]] = field(default_factory=list)  # (display, message)
    root: str = "."  # absolute directory display paths are relative to
    threshold: float = 0.9
    shard: tuple[int, int] | None = None
    tool_version: str = "0+unknown"
    fix_status: dict[str, str] = field(default_factory=dict)  # display -> "fixed" / reason

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]


def build_report(results: list[FileResult], summary: Summary, walk_skipped, **kw) -> Report:
    skipped = list(walk_skipped) + [(r.display, r.skipped) for r in results if r.skipped]
    errors = [(r.display, r.error) for r in results if r.error]
    summary.skipped += len(walk_skipped)
    return Report(results, summary, sorted(skipped), errors, **kw)
