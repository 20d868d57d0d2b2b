"""Property-based fuzz of the framing and JSON layer (issue 23): at least 10,000 random and
mutated messages through the real read loop (`rpc.serve`) and server (`build_server`),
in process, seeded and bounded (hypothesis, derandomized; CI well under a minute).

Each example is one session: `initialize`, a document opened, then a stream of valid
edits (mirrored in the client's own copy, `ref_apply_change`), valid requests, and junk:
random bytes, mutated (flipped, cut, duplicated) copies of valid bodies, nesting and
numbers at and past their limits, NaN/Infinity, wrong JSON types, bad envelopes. Checked:
the loop never raises; every valid request is answered exactly once; every byte the
server writes is strict JSON (no NaN) framed with a correct Content-Length, and every
response id is one that was sent or null; the document equals the client's copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlsp_benchmarks.soak import frame, ref_apply_change
from lsp_server import rpc
from lsp_server.server import DOCUMENT_STATE_COMMAND, build_server

URI = "file:///fuzz.py"
SCRATCH = "file:///zz-scratch-zz.txt"  # mutated edits go here, far from URI in bytes
EXAMPLES = 45
MIN_MESSAGES = 230
COUNT = {"messages": 0, "sessions": 0}


def _strict(text: str):
    def no(name):
        raise ValueError(name)

    return json.loads(text, parse_constant=no)


class _Writer:
    """Collects what the server writes and parses it frame by frame, strictly."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.parsed: list[dict] = []
        self.answered: set = set()
        self.changed = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.data += data
        while True:
            head, sep, rest = bytes(self.data).partition(b"\r\n\r\n")
            if not sep:
                break
            n = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            if len(rest) < n:
                break
            m = _strict(rest[:n].decode("ascii"))  # strict JSON, ASCII as pygls writes
            self.parsed.append(m)
            if "method" not in m:
                self.answered.add(m.get("id"))
            del self.data[:len(head) + 4 + n]
        self.changed.set()

    def close(self) -> None:
        pass


def _session(frames: list[bytes], expected: set) -> list[dict]:
    """Serve `frames`; at EOF wait (bounded) until every expected id is answered."""
    server = build_server()
    writer = _Writer()
    server.protocol.set_writer(writer)

    async def main() -> None:
        data = b"".join(frames)
        pos = 0

        class Reader:
            async def readline(self) -> bytes:
                nonlocal pos
                await asyncio.sleep(0)  # let handlers run between messages
                if pos >= len(data):
                    async with asyncio.timeout(30):
                        while not expected <= writer.answered:
                            writer.changed.clear()
                            await writer.changed.wait()
                    return b""
                end = data.find(b"\n", pos)
                end = len(data) if end < 0 else end + 1
                line, pos = data[pos:end], end
                return line

            async def readexactly(self, n: int) -> bytes:
                nonlocal pos
                chunk, pos = data[pos:pos + n], min(len(data), pos + n)
                return chunk

        await rpc.serve(threading.Event(), Reader(), server.protocol)

    try:
        asyncio.run(main())
    finally:
        server.worker.shutdown()
    assert not writer.data, "a partial frame at the end"
    return writer.parsed


def _msg(**kw) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **kw}).encode()


def _mutate(rnd: random.Random, body: bytes) -> bytes:
    b = bytearray(body)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(4)
        if op == 0 and b:
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        elif op == 1 and b:
            del b[rnd.randrange(len(b)):]
        elif op == 2:
            i = rnd.randrange(len(b) + 1)
            b[i:i] = rnd.choice([b"[", b"{", b"NaN", b"-Infinity", b"1e999", b"9" * 5000,
                                 b'"\\ud800"', b"null", b"\x00", b"\xff"])
        elif b:
            i, j = sorted(rnd.randrange(len(b)) for _ in range(2))
            b[i:i] = b[i:j]
    return bytes(b)


def _junk(rnd: random.Random, ids) -> bytes:
    """One correctly framed body that is not a valid message (or is one for SCRATCH)."""
    kind = rnd.randrange(9)
    if kind == 0:
        return rnd.randbytes(rnd.randint(0, 64))
    if kind == 1:
        d = rnd.choice([rpc.MAX_JSON_DEPTH - 2, rpc.MAX_JSON_DEPTH + 1, 1000])
        return b"[" * d + b"]" * d
    if kind == 2:
        return _msg(id=rnd.choice(["NaN", "Infinity"]), method="x").replace(
            b'"NaN"', b"NaN").replace(b'"Infinity"', b"Infinity")
    if kind == 3:  # wrong types in an edit of the scratch document
        bad = rnd.choice([None, 5, True, "1", 1.5, [], {}])
        field = rnd.choice(["text", "line", "version"])
        r = {"start": {"line": bad if field == "line" else 0, "character": 0},
             "end": {"line": 0, "character": 0}}
        return _msg(method="textDocument/didChange", params={
            "textDocument": {"uri": SCRATCH, "version": bad if field == "version" else 2},
            "contentChanges": [{"range": r, "text": bad if field == "text" else "x"}]})
    if kind == 4:  # a request with wrong-typed params: answered (id known)
        i = next(ids)
        bad = rnd.choice(["3", 1.5, True, None, -1, 2**40, [], {}])
        return _msg(id=i, method="textDocument/completion", params={
            "textDocument": {"uri": URI}, "position": {"line": bad, "character": 0}})
    if kind == 5:
        return _msg(id=next(ids), method=rnd.choice([42, None, [], "$/cancelRequest",
                                                     "$/setTrace", "no/such"]))
    if kind == 6:
        return rnd.choice([b"{}", b"[]", b"null", b'"x"', b"1", b'{"jsonrpc": "1.0"}',
                           b'{"jsonrpc": "2.0", "id": 5}', b'{"jsonrpc": "2.0", "id": [1]}'])
    if kind == 7:  # a mutated edit of the scratch document
        return _mutate(rnd, _msg(method="textDocument/didChange", params={
            "textDocument": {"uri": SCRATCH, "version": 3},
            "contentChanges": [{"range": {"start": {"line": 0, "character": 0},
                                          "end": {"line": 0, "character": 1}},
                                "text": "abc\r\n\ud83d\ude00"}]}))
    # a mutated request: answered or refused, but never a crash
    return _mutate(rnd, _msg(id=f"m{rnd.randrange(10**6)}", method="workspace/executeCommand",
                             params={"command": "diffusion-lsp.status"}))


PIECES = ["x", "\n", "\r\n", "é", "中", "\U0001f600", "\u200d", "\x00", "def f():\n", "    "]


@st.composite
def sessions(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(MIN_MESSAGES, MIN_MESSAGES + 40))
    return seed, n


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(sessions())
def _fuzz(session):
    seed, n = session
    rnd = random.Random(seed)
    counter = iter(range(1, 10**9))
    ids = (f"r{i}" for i in counter)
    text, version = "def f(a):\n    return a\n", 1
    expected: set = set()
    frames = [frame(_msg(id="init", method="initialize", params={
        "processId": None, "rootUri": None, "capabilities": {}})),
        frame(_msg(method="textDocument/didOpen", params={"textDocument": {
            "uri": URI, "languageId": "python", "version": 1, "text": text}})),
        frame(_msg(method="textDocument/didOpen", params={"textDocument": {
            "uri": SCRATCH, "languageId": "plaintext", "version": 1, "text": "s"}}))]
    expected.add("init")
    for _ in range(n):
        r = rnd.random()
        if r < 0.35:  # a valid edit, anywhere (past the end, inside pairs: clamped)
            lines = _lines(text)
            a = (rnd.randrange(len(lines) + 1), rnd.randrange(12))
            b = (rnd.randrange(len(lines) + 1), rnd.randrange(12))
            a, b = min(a, b), max(a, b)
            new = "".join(rnd.choice(PIECES) for _ in range(rnd.randrange(4)))
            version += 1
            text = ref_apply_change(text, a, b, new)
            frames.append(frame(_msg(method="textDocument/didChange", params={
                "textDocument": {"uri": URI, "version": version},
                "contentChanges": [{"range": {"start": {"line": a[0], "character": a[1]},
                                              "end": {"line": b[0], "character": b[1]}},
                                    "text": new}]})))
        elif r < 0.45:
            i = next(ids)
            expected.add(i)
            frames.append(frame(_msg(id=i, method="workspace/executeCommand", params={
                "command": rnd.choice([DOCUMENT_STATE_COMMAND, "diffusion-lsp.status"]),
                "arguments": [URI]})))
        else:
            body = _junk(rnd, ids)
            frames.append(frame(body))
            try:
                m = _strict(body.decode("utf-8"))
            except (ValueError, RecursionError):
                continue
            if (isinstance(m, dict) and isinstance(m.get("id"), str)
                    and m["id"].startswith("r") and rpc.too_deep(body) is False):
                expected.add(m["id"])
    final = next(ids)
    expected.add(final)
    frames.append(frame(_msg(id=final, method="workspace/executeCommand", params={
        "command": DOCUMENT_STATE_COMMAND, "arguments": [URI]})))
    COUNT["messages"] += len(frames)
    COUNT["sessions"] += 1

    out = _session(frames, expected)
    responses = [m for m in out if "method" not in m]
    got = [m.get("id") for m in responses]
    for i in expected:
        assert got.count(i) == 1, (i, got.count(i))
    for m in responses:  # ids: one that was sent (mutants keep or garble theirs) or null
        assert m["jsonrpc"] == "2.0" and ("result" in m) != ("error" in m), m
        assert m.get("id") is None or type(m["id"]) in (str, int), m
    state = next(m["result"] for m in responses if m.get("id") == final)
    data = text.encode("utf-8", "surrogatepass")
    assert state["open"] and state["version"] == version
    assert (state["length"], state["sha256"]) == (len(text), hashlib.sha256(data).hexdigest())


def test_ten_thousand_random_and_mutated_messages():
    _fuzz()
    assert COUNT["sessions"] == EXAMPLES
    assert COUNT["messages"] >= 10_000, COUNT
