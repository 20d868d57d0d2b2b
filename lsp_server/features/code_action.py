"""textDocument/codeAction "Repair this block" and codeAction/resolve.

A DL003 diagnostic (a probably misspelt name) gets its own quick fix, the replacement of
the name, built from the diagnostic's data without the model. "Repair this block" is
offered on an explicit selection, as the quick fix of one of our diagnostics (or of a
syntax error at the cursor the client has not been told about yet), or when the user asked
(triggerKind Invoked); never on every line for the lightbulb. Listing the action is cheap
(tree-sitter and the tokenizer, in a thread off the event loop); the model runs in resolve
when the client can resolve `edit`, else in codeAction directly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lsprotocol import types as t
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from diffusion_core.errors import MAX_REPAIR_TOKENS, Cancelled, ModelLoadError
from lsp_server import diagnostics, jobs
from lsp_server.blocks import Block, enclosing_block
from lsp_server.edits import Edit
from lsp_server.features import REPAIR_TITLE, REQUEST_FAILED
from lsp_server.features.sync import yield_to_completion


def echo(d: t.Diagnostic) -> t.Diagnostic:
    """A client's diagnostic, fit to send back in `CodeAction.diagnostics` (the decoded one
    may carry its severity as a plain int, which does not serialise)."""
    sev = t.DiagnosticSeverity(int(d.severity)) if d.severity is not None else None
    return t.Diagnostic(range=d.range, message=d.message, severity=sev, code=d.code,
                        source=d.source, data=d.data)


def lines_of_range(r: t.Range) -> tuple[int, int]:
    start, end = r.start.line, r.end.line
    if end > start and r.end.character == 0:
        end -= 1
    return start, end


@dataclass(frozen=True)
class Target:
    """The lines an action would repair, and what tree-sitter and the tokenizer say of them."""

    start_line: int
    end_line: int
    has_error: bool
    tokens: int | None  # None: no tokenizer yet (the model is loading)


def find_target(service, text: str, language: str, selection: tuple[int, int] | None,
                line: int) -> Target:
    """CPU work (tree-sitter, tokenizer): runs in a thread, off the event loop."""
    if selection is not None:
        start_line, end_line = selection
    elif service is not None:
        b = service.choose_block(text, line, language)
        start_line, end_line = b.start_line, b.end_line
    else:  # still loading: no tokenizer to measure blocks with
        b = enclosing_block(text, line, language)
        start_line, end_line = b.start_line, b.end_line
    has_error = jobs.block_has_error(text, Block(start_line, end_line, "range"), language)
    tokens = None
    if service is not None:
        s, e = jobs.line_span(text, start_line, end_line)
        tokens = len(service.engine.tokenizer.encode(text[s:e]))
    return Target(start_line, end_line, has_error, tokens)


def wanted(params: t.CodeActionParams, kind: t.CodeActionKind) -> bool:
    """Whether the client's `only` filter lets actions of `kind` through."""
    only = params.context.only
    return not only or any(str(kind.value).startswith(str(getattr(o, "value", o))) for o in only)


def name_fixes(ls, snap, params: t.CodeActionParams) -> list[t.CodeAction]:
    """The quick fix of each DL003 diagnostic in the request: replace the name (one text
    edit; nothing when the text under the range is no longer that name). No model."""
    if not wanted(params, t.CodeActionKind.QuickFix):
        return []
    out = []
    for d in params.context.diagnostics or []:
        data = d.data if isinstance(d.data, dict) else {}
        name, new = data.get("name"), data.get("replacement")
        if d.source != diagnostics.SOURCE or d.code != diagnostics.NAME_CODE \
                or not isinstance(name, str) or not isinstance(new, str) or not new.isidentifier():
            continue
        a = snap.offset(d.range.start.line, d.range.start.character, ls.encoding)
        b = snap.offset(d.range.end.line, d.range.end.character, ls.encoding)
        if snap.text[a:b] != name:
            continue
        out.append(t.CodeAction(
            title=f"Replace {name!r} with {new!r}", kind=t.CodeActionKind.QuickFix,
            is_preferred=True, diagnostics=[echo(d)],
            edit=ls.workspace_edit(snap, [Edit(a, b, new)])))
    return out


async def code_actions(ls, params: t.CodeActionParams) -> list[t.CodeAction]:
    snap = ls.snapshot(params.text_document.uri)
    return name_fixes(ls, snap, params) + await repair_actions(ls, snap, params)


async def repair_actions(ls, snap, params: t.CodeActionParams) -> list[t.CodeAction]:
    """"Repair this block", when the request calls for it."""
    if not ls.settings.enable_repair or ls.model_unavailable():
        return []
    r = params.range
    ours = [d for d in params.context.diagnostics or []
            if d.source == diagnostics.SOURCE and d.code == diagnostics.SYNTAX_CODE]
    line = ours[0].range.start.line if ours and r.start == r.end else r.start.line
    selection = lines_of_range(r) if r.start != r.end else None
    text = jobs.clean(snap.text)  # the same offsets, without lone surrogates
    tg = await ls.off_loop(find_target, ls.service, text, snap.language, selection, line)
    invoked = params.context.trigger_kind == t.CodeActionTriggerKind.Invoked
    if r.start == r.end and not ours and not tg.has_error and not invoked:
        return []
    kind = t.CodeActionKind.QuickFix if tg.has_error else t.CodeActionKind.RefactorRewrite
    if not wanted(params, kind):
        return []
    fixes = [echo(d) for d in ours if tg.start_line <= d.range.start.line <= tg.end_line]
    action = t.CodeAction(
        title=REPAIR_TITLE, kind=kind, is_preferred=tg.has_error or None,
        diagnostics=fixes or None,
        data={"uri": snap.uri, "version": snap.version,
              "startLine": tg.start_line, "endLine": tg.end_line},
    )
    if tg.tokens is not None and tg.tokens > MAX_REPAIR_TOKENS:
        if not ls.session.disabled_actions:
            return []
        action.disabled = t.CodeActionDisabled(
            reason=f"the block has {tg.tokens} tokens; the model repairs at most "
                   f"{MAX_REPAIR_TOKENS} (select fewer lines)")
        return [action]
    if not ls.session.resolve_edit:
        action.edit = await repair_edit(ls, snap.uri, snap.version, tg.start_line, tg.end_line)
    return [action]


async def repair_edit(ls, uri: str, version: int | None, start_line: int,
                      end_line: int) -> t.WorkspaceEdit:
    """Run the repair job on whole lines; an empty edit if nothing changes or it is stale."""
    snap = ls.snapshot(uri)
    empty = t.WorkspaceEdit(changes={})
    if version is not None and snap.version != version:
        ls.metrics.stale += 1
        return empty
    if ls.model_unavailable():
        raise JsonRpcException(code=REQUEST_FAILED, message=f"no model loaded: {ls.load_error}")
    rid = ls.protocol.msg_id
    yield_to_completion(ls)  # the user waits for this one: DL003 jobs give way

    def job(token):
        service = ls.service
        if service is None:
            raise ModelLoadError(ls.load_error or "no model loaded")
        return service.repair(snap.text, start_line, end_line, cancel=token,
                              language=snap.language, sampler=ls.sampler(service.engine))

    try:
        res = await ls.worker.run(job, key=("repair", uri), label=f"repair {uri}")
    except asyncio.CancelledError:
        ls.metrics.cancelled += 1
        raise
    except Cancelled:
        ls.metrics.superseded += 1
        return empty
    except (ValueError, ModelLoadError) as e:
        raise JsonRpcException(code=REQUEST_FAILED, message=f"{REPAIR_TITLE}: {e}") from None
    now = ls.docs.get(uri)
    if now is None or now.version != snap.version:
        ls.metrics.stale += 1
        return empty
    ls.metrics.repairs += 1
    lines = f"{res.start_line + 1}-{res.end_line + 1}"
    ls.log_line("info", f"[{rid}] repair lines {lines}: {len(res.edits)} edits, confidence "
                f"{res.confidence:.2f}, {res.timings.total_ms:.0f} ms")
    if not res.edits:
        ls.show("info", f"diffusion-lsp: no change proposed for lines {lines}")
        return empty
    return ls.workspace_edit(snap, list(res.edits))


def register(server) -> None:
    @server.feature(t.TEXT_DOCUMENT_CODE_ACTION, t.CodeActionOptions(
        code_action_kinds=[t.CodeActionKind.QuickFix, t.CodeActionKind.RefactorRewrite],
        resolve_provider=True))
    async def code_action(ls, params: t.CodeActionParams):
        return await code_actions(ls, params)

    @server.feature(t.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls, action: t.CodeAction):
        data = action.data if isinstance(action.data, dict) else {}
        try:
            uri, start, end = data["uri"], int(data["startLine"]), int(data["endLine"])
            version = data.get("version")
        except (KeyError, TypeError, ValueError):
            raise JsonRpcInvalidParams(message="codeAction/resolve: not a diffusion-lsp action "
                                       "(data must carry uri, startLine, endLine)") from None
        action.edit = await repair_edit(ls, uri, version, start, end)
        if action.diagnostics:
            action.diagnostics = [echo(d) for d in action.diagnostics]
        return action
