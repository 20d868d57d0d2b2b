"""What a check run produces: rules, findings, skipped files and per-file results.

Plain dataclasses (picklable, so worker processes can return them) with no I/O. Lines and
columns are 1-based; columns count Unicode code points and `end_column` is exclusive
(the SARIF convention), so an insertion has start == end.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Rule:
    id: str  # stable: DL001, DL002 ... (SARIF ruleId, never renumbered)
    name: str  # kebab-case, shown next to the id
    level: str  # SARIF level / GitHub annotation kind: "error" or "warning"
    short: str
    full: str


SYNTAX_ERROR = Rule(
    "DL001", "syntax-error", "error",
    "Syntax error that the repair model can fix",
    "The file does not parse, and the edit model proposes a replacement for the enclosing "
    "block after which it does. The proposed replacement is attached as a fix.",
)
SUSPICIOUS_CODE = Rule(
    "DL002", "suspicious-code", "warning",
    "The repair model is confident this code is wrong",
    "The edit model re-predicted every token of the block given the rest of the file and "
    "proposes a change with a confidence at or above the threshold (--threshold). The "
    "proposed replacement is attached as a fix; review it before applying.",
)
RULES: tuple[Rule, ...] = (SYNTAX_ERROR, SUSPICIOUS_CODE)
RULES_BY_ID = {r.id: r for r in RULES}


@dataclass
class Finding:
    rule_id: str
    path: str  # display path: relative to the root with "/" separators when inside it
    line: int
    column: int
    end_line: int
    end_column: int  # exclusive
    message: str
    original: str  # text of [start_offset, end_offset) before the change
    replacement: str  # text proposed for that range
    confidence: float
    start_offset: int  # code-point offsets into the decoded file text
    end_offset: int
    block_start_line: int  # 1-based, inclusive: the block the model re-predicted
    block_end_line: int
    fingerprint: str = ""  # stable across line shifts (SARIF partialFingerprints)
    diff: str = ""  # unified diff of the block, with the file's line numbers

    @property
    def rule(self) -> Rule:
        return RULES_BY_ID[self.rule_id]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rule_name"] = self.rule.name
        d["level"] = self.rule.level
        return d


@dataclass
class FileResult:
    path: str  # absolute path that was read (symlinks resolved for writing)
    display: str  # display path, as in findings
    findings: list[Finding] = field(default_factory=list)
    skipped: str | None = None  # reason the file was skipped (binary, too large, ...)
    error: str | None = None  # internal error while checking this file (exit code 2)
    fatal: bool = False  # the worker cannot check anything (model failed to load)
    blocks: int = 0  # blocks sent to the model
    long_blocks: int = 0  # blocks too long for the model, not checked
    unrepaired_syntax_errors: int = 0
    digest: str = ""  # sha256 of the bytes that were read (for --fix)
    encoding: str = "utf-8"
    seconds: float = 0.0


def fingerprint(rule_id: str, display: str, block_text: str, replacement: str, nth: int) -> str:
    """Identity of a finding that survives edits elsewhere in the file: the rule, the
    file, the whitespace-normalised block, the proposal and its occurrence number."""
    norm = "\n".join(line.strip() for line in block_text.splitlines() if line.strip())
    h = hashlib.sha256()
    for part in (rule_id, display, norm, replacement.strip(), str(nth)):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:32]
