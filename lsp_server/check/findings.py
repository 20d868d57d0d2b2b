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
    "The file does not parse",
    "The parser rejects the file; the finding is at the parser's error, with its message. "
    "When the repair model finds an edit after which the file parses (verified by the "
    "parser), it is attached as a fix. Reported whatever the confidence.",
)
SUSPICIOUS_CODE = Rule(
    "DL002", "suspicious-code", "warning",
    "The repair model is confident this code is wrong",
    "The edit model re-predicted every token of the block given the rest of the file and "
    "proposes a change with a confidence at or above the threshold (--threshold). The "
    "proposed replacement is attached as a fix; review it before applying.",
)
MISSPELT_NAME = Rule(
    "DL003", "misspelt-name", "warning",
    "A name that is probably a misspelling of a name in scope",
    "The name is used but never defined, imported or built in, it is one or two edits away "
    "from a name that is, and the model rates the other name as far more likely here "
    "(--name-threshold). The proposed name is attached as a fix.",
)
RULES: tuple[Rule, ...] = (SYNTAX_ERROR, SUSPICIOUS_CODE, MISSPELT_NAME)
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
    replacement: str | None  # text proposed for that range; None: no fix (a bare DL001)
    confidence: float  # of the fix (0.0 without one)
    start_offset: int  # code-point offsets into the decoded file text: the fix's range
    end_offset: int
    block_start_line: int  # 1-based, inclusive: the block the model re-predicted
    block_end_line: int
    fingerprint: str = ""  # stable across line shifts (SARIF partialFingerprints)
    diff: str = ""  # unified diff of the block, with the file's line numbers
    # 1-based range of the fix when it differs from the finding's own (a syntax error is
    # reported where the parser stops; the fix may be elsewhere); 0: same as the finding
    fix_line: int = 0
    fix_column: int = 0
    fix_end_line: int = 0
    fix_end_column: int = 0

    @property
    def rule(self) -> Rule:
        return RULES_BY_ID[self.rule_id]

    @property
    def has_fix(self) -> bool:
        return self.replacement is not None

    @property
    def fix_region(self) -> tuple[int, int, int, int]:
        if self.fix_line:
            return self.fix_line, self.fix_column, self.fix_end_line, self.fix_end_column
        return self.line, self.column, self.end_line, self.end_column

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("fix_line", "fix_column", "fix_end_line", "fix_end_column"):
            del d[k]
        d["rule_name"] = self.rule.name
        d["level"] = self.rule.level
        if self.has_fix:
            line, col, end_line, end_col = self.fix_region
            d["suggestion"] = {
                "line": line, "column": col, "end_line": end_line, "end_column": end_col,
                "original": self.original, "replacement": self.replacement,
            }
        else:
            d["suggestion"] = None
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
    unrepaired_syntax_errors: int = 0  # DL001 findings without a fix
    suspect_blocks: int = 0  # blocks the cheap pass sent to the full repair
    digest: str = ""  # sha256 of the bytes that were read (for --fix)
    encoding: str = "utf-8"
    seconds: float = 0.0


def fingerprint(rule_id: str, display: str, block_text: str, replacement: str, nth: int) -> str:
    """Identity of a finding that survives edits elsewhere in the file: the rule, the
    file, the whitespace-normalised block, the proposal and its occurrence number."""
    norm = "\n".join(line.strip() for line in block_text.splitlines() if line.strip())
    h = hashlib.sha256()
    for part in (rule_id, display, norm, (replacement or "").strip(), str(nth)):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:32]
