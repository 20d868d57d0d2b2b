"""Findings built from what the model proposed: the fix's smallest span, the message, the
block diff and a fingerprint that survives line shifts. No model and no files here."""

from __future__ import annotations

from dataclasses import replace

from lsp_server.check.findings import MISSPELT_NAME, SYNTAX_ERROR, Finding, fingerprint
from lsp_server.check.fix import block_diff
from lsp_server.check.names import NameUse, choose
from lsp_server.edits import apply_edits, minimal_edits, shift


def name_finding(rank, display, table, text, s, e, use: NameUse, bar: float, blk, seen
                 ) -> Finding | None:
    """DL003 for one use of an unbound name in the block [s, e) (`names.choose`)."""
    got = choose(rank, text, s, e, use, bar)
    if got is None:
        return None
    name, conf, new_block = got
    block = text[s:e]
    line, col = table.position(use.start)
    end_line, end_col = table.position(use.end)
    return Finding(
        rule_id=MISSPELT_NAME.id, path=display, line=line, column=col, end_line=end_line,
        end_column=end_col,
        message=f"{use.name!r} is not defined; did you mean {name!r}? (confidence {conf:.2f})",
        original=use.name, replacement=name, confidence=round(conf, 4),
        start_offset=use.start, end_offset=use.end,
        block_start_line=blk.start_line + 1, block_end_line=blk.end_line + 1,
        fingerprint=fingerprint(MISSPELT_NAME.id, display, block, name,
                                _nth(seen, MISSPELT_NAME.id + block + use.name)),
        diff=block_diff(display, block, new_block, blk.start_line + 1),
    )


def _fix_parts(base: int, block: str, new: str) -> tuple[int, int, str, str]:
    """Offsets [start, end) in the file and the replacement of the smallest span that
    turns `block` (at `base`) into `new`."""
    edits = minimal_edits(block, new)
    lo, hi = edits[0].start, edits[-1].end
    replacement = apply_edits(block[lo:hi], shift(edits, -lo))
    return base + lo, base + hi, block[lo:hi], replacement


def _detail(original: str, replacement: str) -> str:
    a, b = _short(original), _short(replacement)
    if original and replacement:
        return f"replace {a} with {b}"
    return f"insert {b}" if replacement else f"delete {a}"


def _nth(seen: dict[str, int], key: str) -> int:
    nth = seen.get(key, 0)
    seen[key] = nth + 1
    return nth


def syntax_finding(display, table, text, base, block, new, conf, own, blk, seen) -> Finding:
    a, b, problem = own
    line, col = table.position(a)
    end_line, end_col = table.position(b)
    msg = f"syntax error: {problem.message}"
    kw = {}
    if new is not None:
        start, end, original, replacement = _fix_parts(base, block, new)
        fl, fc = table.position(start)
        fel, fec = table.position(end)
        kw = {"fix_line": fl, "fix_column": fc, "fix_end_line": fel, "fix_end_column": fec}
        msg += f"; fix: {_detail(original, replacement)} (confidence {conf:.2f})"
        diff = block_diff(display, block, new, blk.start_line + 1)
    else:
        start = end = a
        original, replacement, diff = "", None, ""
        msg += "; the model has no repair that parses"
    key = SYNTAX_ERROR.id + problem.message + "\n".join(s.strip() for s in block.splitlines())
    return Finding(
        rule_id=SYNTAX_ERROR.id, path=display, line=line, column=col, end_line=end_line,
        end_column=end_col, message=msg, original=original, replacement=replacement,
        confidence=round(float(conf), 4), start_offset=start, end_offset=end,
        block_start_line=blk.start_line + 1, block_end_line=blk.end_line + 1,
        fingerprint=fingerprint(SYNTAX_ERROR.id, display, block or problem.message,
                                replacement or "", _nth(seen, key)),
        diff=diff, **kw,
    )


def finding(rule, msg, display, table, text, base, block, new, conf, blk, seen) -> Finding:
    start, end, original, replacement = _fix_parts(base, block, new)
    line, col = table.position(start)
    end_line, end_col = table.position(end)
    return Finding(
        rule_id=rule.id, path=display, line=line, column=col, end_line=end_line, end_column=end_col,
        message=f"{msg}: {_detail(original, replacement)} (confidence {conf:.2f})",
        original=original, replacement=replacement, confidence=round(float(conf), 4),
        start_offset=start, end_offset=end,
        block_start_line=blk.start_line + 1, block_end_line=blk.end_line + 1,
        fingerprint=fingerprint(rule.id, display, block, replacement, _nth(seen, rule.id + block)),
        diff=block_diff(display, block, new, blk.start_line + 1),
    )


def _short(s: str, limit: int = 60) -> str:
    s = s if len(s) <= limit else s[: limit - 3] + "..."
    return repr(s)


def without_fix(f: Finding, error_offset: int) -> Finding:
    """A DL001 finding with its fix taken away (the fixes of the file do not parse
    together), reported at its error as one the model cannot repair."""
    msg = f.message.split("; fix: ", 1)[0] + "; the model has no repair that parses"
    return replace(f, message=msg, original="", replacement=None, confidence=0.0,
                   start_offset=error_offset, end_offset=error_offset, diff="",
                   fix_line=0, fix_column=0, fix_end_line=0, fix_end_column=0)
