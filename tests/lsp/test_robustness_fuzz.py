"""Hypothesis fuzz targets: document sync, position conversion and message framing.

tests/lsp/test_positions.py covers round trips of well-formed positions on short texts.
Here: whole didChange sequences through `DocumentStore` (positions past the ends,
inside surrogate pairs and "\\r\\n", reversed ranges, full replacements, lone surrogates)
against `dlsp_benchmarks.soak.ref_apply_change`, a reference written separately from the LSP
specification; conversion in all three encodings against byte-level references; and
`rpc.serve` framing with garbage between frames.
"""

from __future__ import annotations

import asyncio
import json
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlsp_benchmarks.soak import frame, ref_apply_change, ref_offset, ref_position
from lsp_server import rpc
from lsp_server.documents import DocumentStore
from lsp_server.positions import UTF8, UTF16, UTF32, LineIndex

EMOJI = "\U0001f600"
PIECES = ["a", "Z", " ", "\t", "\n", "\r", "\r\n", "é", "e\u0301", "中", EMOJI,
          "\U0001f9d1\u200d\U0001f4bb", "\ufeff", "\x00", "\ud800", "\udfff", "\u2028"]
texts = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
coord = st.integers(0, 12) | st.integers(0, 2**31 - 1)
position = st.tuples(coord, coord)
edit = st.one_of(
    st.tuples(position, position, texts),  # a range (possibly reversed or out of range)
    texts,  # a full-text replacement
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(texts, st.lists(st.lists(edit, min_size=1, max_size=4), max_size=6))
def test_document_sync_matches_the_reference(text, batches):
    store = DocumentStore()
    store.open("u", text, 1, "python")
    want = text
    for version, batch in enumerate(batches, start=2):
        changes = []
        for e in batch:
            if isinstance(e, str):
                changes.append(e)
                want = e
            else:
                a, b, new = e
                changes.append((a, b, new))
                want = ref_apply_change(want, a, b, new)
        snap = store.change("u", version, changes)
        assert snap.text == want and snap.version == version
        one = want.replace("\r\n", "\n")
        assert snap.index.line_count == one.count("\n") + one.count("\r") + 1


@FUZZ
@given(texts, position)
def test_utf16_offsets_match_the_reference(text, pos):
    assert LineIndex(text).offset(*pos) == ref_offset(text, *pos)


@FUZZ
@given(texts, st.data())
def test_positions_match_the_reference_everywhere(text, data):
    off = data.draw(st.integers(0, len(text)))
    if 0 < off < len(text) and text[off - 1] == "\r" and text[off] == "\n":
        off -= 1  # inside "\r\n" is not a position; both sides call it the line end
    assert LineIndex(text).position(off) == ref_position(text, off)


def _units(s: str, enc: str) -> int:
    if enc == UTF8:
        return len(s.encode("utf-8", "surrogatepass"))
    if enc == UTF16:
        return len(s.encode("utf-16-le", "surrogatepass")) // 2
    return len(s)


@FUZZ
@given(texts, position, st.sampled_from([UTF8, UTF16, UTF32]))
def test_offsets_land_on_code_points_never_past_the_requested_column(text, pos, enc):
    idx = LineIndex(text)
    off = idx.offset(*pos, enc)
    assert 0 <= off <= len(text)
    line, col = idx.position(off, enc)
    if pos[0] < idx.line_count:
        assert line == pos[0]
        start, end = idx.line_bounds(line)
        assert col <= pos[1] and col == _units(text[start:off], enc)
        # rounding down inside a code point: the next code point would pass the column
        if off < end:
            assert _units(text[start:off + 1], enc) > pos[1]
    else:
        assert off == len(text)


# -- framing -----------------------------------------------------------------------------
class _Recorder:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.errors: list[int] = []

    def handle_body(self, body: bytes) -> None:
        self.bodies.append(body)

    def send_error(self, msg_id, code: int, message: str) -> None:
        self.errors.append(code)


def _serve(data: bytes) -> _Recorder:
    async def main() -> _Recorder:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()

        class Reader:  # pygls' StdinAsyncReader returns short reads at EOF, no exception
            readline = staticmethod(reader.readline)

            @staticmethod
            async def readexactly(n: int) -> bytes:
                try:
                    return await reader.readexactly(n)
                except asyncio.IncompleteReadError as e:
                    return e.partial

        rec = _Recorder()
        await rpc.serve(threading.Event(), Reader(), rec)  # type: ignore[arg-type]
        return rec

    return asyncio.run(main())


garbage = st.binary(max_size=40).filter(lambda b: b"content-length" not in b.lower())


@FUZZ
@given(st.lists(st.tuples(garbage, st.dictionaries(st.text(max_size=5), st.integers(),
                                                   max_size=3)), min_size=1, max_size=8))
def test_framing_recovers_after_garbage(items):
    data = b""
    sent = []
    for junk, payload in items:
        body = json.dumps(payload).encode()
        data += junk + frame(body)
        sent.append(body)
    got = _serve(data).bodies
    # every frame arrives except, at most, the one right after each piece of garbage
    # (garbage ending in a blank line can make a header look like a body)
    assert len(got) >= len(sent) - sum(1 for junk, _ in items if junk)
    clean = [body for (junk, _), body in zip(items, sent, strict=True) if not junk]
    for body in clean:
        assert body in got


def test_oversized_message_is_skipped_without_allocating(monkeypatch):
    from lsp_server import framing  # the read loop's own limits

    monkeypatch.setattr(framing, "MAX_BODY_BYTES", 100)
    monkeypatch.setattr(framing, "_SKIP_CHUNK", 7)
    big = frame(b"x" * 1000)
    rec = _serve(big + frame(b'{"ok": 1}'))
    assert rec.errors == [rpc.INVALID_REQUEST] and rec.bodies == [b'{"ok": 1}']
