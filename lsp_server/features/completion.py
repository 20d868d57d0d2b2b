"""textDocument/completion and textDocument/inlineCompletion: one completion job each."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from lsprotocol import types as t
from pygls.exceptions import JsonRpcException

from diffusion_core.errors import Cancelled
from lsp_server import jobs
from lsp_server.features import REQUEST_FAILED
from lsp_server.features.sync import yield_to_completion

log = logging.getLogger("lsp_server")


def documentation(ls, language: str, code: str):
    """The proposed code as the item's documentation, in a format the client declared."""
    formats = ls.session.documentation_formats
    if t.MarkupKind.Markdown.value in formats:
        return t.MarkupContent(kind=t.MarkupKind.Markdown, value=f"```{language}\n{code}\n```")
    if t.MarkupKind.PlainText.value in formats:
        return t.MarkupContent(kind=t.MarkupKind.PlainText, value=code)
    return None


async def complete(ls, uri: str, pos: t.Position, what: str, mode: str | None = None,
                   rerank: int = 0):
    """Run a completion job; (snapshot, offset, result) or None for "no result".
    `mode`: jobs.SINGLE or jobs.MULTI instead of the one the cursor position implies;
    `rerank`: candidates ranked for a single-line job (`Service.complete`)."""
    snap = ls.snapshot(uri)
    if ls.model_unavailable():
        return None
    offset = snap.offset(pos.line, pos.character, ls.encoding)
    rid = ls.protocol.msg_id
    t0 = time.perf_counter()

    def job(token):
        service = ls.service
        if service is None:
            return None
        return service.complete(snap.text, offset, uri=uri, cancel=token,
                                sampler=ls.sampler(service.engine), mode=mode, rerank=rerank)

    try:
        # One key per kind: automatic ghost text never supersedes a completion the user
        # asked for (or the other way round); a newer request of the same kind does.
        kind = "complete" if what == "completion" else "inline"
        yield_to_completion(ls)  # a DL003 job in the worker never holds a completion up
        res = await ls.worker.run(job, key=(kind, uri), label=f"{what} [{rid}] {uri}")
    except asyncio.CancelledError:
        ls.metrics.cancelled += 1
        ls.log_line("info", f"[{rid}] {what} cancelled by the client after "
                    f"{(time.perf_counter() - t0) * 1000:.0f} ms")
        raise
    except Cancelled:
        ls.metrics.superseded += 1
        ls.log_line("debug", f"[{rid}] {what} superseded or document changed")
        return None
    except Exception as e:
        ls.metrics.errors += 1
        log.exception("completion job failed")
        ls.log_line("error", f"[{rid}] {what} failed: {type(e).__name__}: {e}")
        if ls.service is not None:  # a bad cache entry must not fail every later request
            ls.service.forget(uri)
        raise JsonRpcException(code=REQUEST_FAILED,
                               message=f"{what} failed: {type(e).__name__}: {e}") from None
    if res is None:
        return None
    now = ls.docs.get(uri)
    if now is None or now.version != snap.version:
        ls.metrics.stale += 1
        ls.log_line("debug", f"[{rid}] {what} dropped: document moved on to a new version")
        return None
    ms = (time.perf_counter() - t0) * 1000
    ls.metrics.completed(rid, res, ms)
    tm = res.timings
    ls.log_line("info", f"[{rid}] {what} {res.mode}-line at {pos.line}:{pos.character} -> "
                f"{len(res.text)} chars in {ms:.0f} ms (engine {tm.engine_ms:.0f} ms, "
                f"{tm.steps} steps, reused {tm.reused_tokens} / encoded "
                f"{tm.encoded_tokens} context tokens"
                + (f", {tm.candidates} lines ranked in {tm.rerank_ms:.0f} ms" if tm.candidates else "")
                + f"{', out of time' if tm.out_of_time else ''})")
    return snap, offset, res


async def candidates(ls, uri: str, pos: t.Position, what: str, invoked: bool):
    """(snapshot, offset, [results]) of the answers to offer, or None.

    One answer while typing. When the user asks (trigger kind Invoked: VS Code's "trigger
    inline suggestion" and its next/previous cycling, Ctrl-Space in the menu), also the
    other length: the rest of the line and the whole block (single- and multi-line mode),
    the second decoded on the cache the first left (only the decode is paid again); and
    the single line is reranked (`completionCandidates` lines ranked by the code after the
    cursor: the best in its place, the others after the block)."""
    k = ls.settings.completion_candidates if invoked else 0
    got = await complete(ls, uri, pos, what, rerank=k)
    if got is None:
        return None
    snap, offset, first = got
    results = [first]
    if invoked:
        other = jobs.MULTI if first.mode == jobs.SINGLE else jobs.SINGLE
        again = await complete(ls, uri, pos, what, mode=other, rerank=k)
        if again is not None and again[0].version == snap.version:
            results.append(again[2])
    found = []
    for res in [*results, *(dataclasses.replace(r, text=a, alternatives=())
                            for r in results for a in r.alternatives)]:
        if res.text.strip() and all(res.text != f.text for f in found):
            found.append(res)
    return (snap, offset, found) if found else None


def completion_item(ls, snap, offset: int, res, rank: int = 0) -> t.CompletionItem:
    word = jobs.word_before(snap.text, offset)
    new_text = word + res.text
    first = new_text.strip().split("\n", 1)[0]
    label = first if len(first) <= 60 else first[:57] + "..."
    return t.CompletionItem(
        label=label or new_text.strip()[:60],
        kind=t.CompletionItemKind.Snippet if res.mode == jobs.MULTI else t.CompletionItemKind.Text,
        detail="diffusion-lsp",
        documentation=documentation(ls, snap.language, new_text),
        filter_text=new_text,
        sort_text=str(rank),
        insert_text_format=t.InsertTextFormat.PlainText,
        text_edit=t.TextEdit(range=ls.lsp_range(snap, offset - len(word), offset), new_text=new_text),
    )


def register(server) -> None:
    @server.feature(t.TEXT_DOCUMENT_COMPLETION,
                    t.CompletionOptions(trigger_characters=[".", "(", ","]))
    async def completion(ls, params: t.CompletionParams):
        empty = t.CompletionList(is_incomplete=True, items=[])
        if not ls.settings.enable_completion:
            ls.snapshot(params.text_document.uri)
            return empty
        invoked = params.context is not None and \
            params.context.trigger_kind == t.CompletionTriggerKind.Invoked
        got = await candidates(ls, params.text_document.uri, params.position, "completion", invoked)
        if got is None:
            return empty
        snap, offset, found = got
        return t.CompletionList(is_incomplete=True, items=[
            completion_item(ls, snap, offset, res, rank) for rank, res in enumerate(found)])

    @server.feature(t.TEXT_DOCUMENT_INLINE_COMPLETION, t.InlineCompletionOptions())
    async def inline_completion(ls, params: t.InlineCompletionParams):
        empty = t.InlineCompletionList(items=[])
        if not ls.settings.enable_inline_completion:
            ls.snapshot(params.text_document.uri)
            return empty
        invoked = params.context.trigger_kind == t.InlineCompletionTriggerKind.Invoked
        got = await candidates(ls, params.text_document.uri, params.position, "inline completion",
                               invoked)
        if got is None:
            return empty
        snap, offset, found = got
        here = ls.lsp_range(snap, offset, offset)
        return t.InlineCompletionList(items=[
            t.InlineCompletionItem(insert_text=res.text, range=here) for res in found])
