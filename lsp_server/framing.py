"""The read loop of the server: framed JSON-RPC messages from stdin or a TCP stream.

`serve` finds each `Content-Length` header (even glued to the leftovers of a broken
frame), skips bodies over `MAX_BODY_BYTES` in chunks and hands every body to the
protocol's `handle_body` (`lsp_server.rpc.RobustProtocol`). The readers bound what one
header line may cost. See `lsp_server.rpc` for what the server answers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from typing import Any

log = logging.getLogger("lsp_server.rpc")  # the server's protocol log

INVALID_REQUEST = -32600
MAX_BODY_BYTES = 256 * 2**20
MAX_HEADER_LINE = 8192  # bytes of one header line (pygls read lines without bound)
MAX_LENGTH_DIGITS = 12  # MAX_BODY_BYTES has 9
_SKIP_CHUNK = 2**20
_CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?\n?$", re.IGNORECASE)


class StreamReaderAdapter:
    """An asyncio.StreamReader (TCP) with the read semantics `serve` expects from stdin:
    a short read at EOF instead of IncompleteReadError, and a header line longer than the
    stream's limit skipped as garbage instead of LimitOverrunError."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def readline(self) -> bytes:
        skipped = False
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                return e.partial or (b"garbage\n" if skipped else b"")
            except asyncio.LimitOverrunError as e:
                await self._reader.readexactly(e.consumed)  # drop the garbage, keep reading
                skipped = True
                continue
            return b"garbage\n" if skipped else line

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError as e:
            return e.partial


class StdinReader:
    """pygls' StdinAsyncReader with bounded header lines: `readline` reads at most
    `MAX_HEADER_LINE` bytes; a longer line is read to its end in pieces of that size and
    comes back as `b"garbage "` plus its last 64 bytes (so a header glued to its end is
    still found) instead of growing without bound."""

    def __init__(self, stdin: Any, executor: Any = None) -> None:
        self.stdin = stdin
        self.executor = executor

    def _readline(self) -> bytes:
        line = self.stdin.readline(MAX_HEADER_LINE)
        if len(line) < MAX_HEADER_LINE or line.endswith(b"\n"):
            return line
        tail = line[-64:]
        while True:
            more = self.stdin.readline(MAX_HEADER_LINE)
            if not more or more.endswith(b"\n"):
                return b"garbage " + (tail + more)[-64:] + (b"" if more else b"\n")
            tail = more[-64:]

    def readline(self):
        return asyncio.get_running_loop().run_in_executor(self.executor, self._readline)

    def readexactly(self, n: int):
        return asyncio.get_running_loop().run_in_executor(self.executor, self.stdin.read, n)


async def serve(stop_event: threading.Event, reader: Any, protocol: Any) -> None:
    """Read framed messages until EOF or `stop_event`; `reader` has async `readline()` and
    `readexactly(n)` (pygls' StdinAsyncReader or an asyncio.StreamReader)."""
    length: int | None = None
    while not stop_event.is_set():
        line = await reader.readline()
        if not line:
            return
        if line.strip():
            # search, not match: after a frame whose Content-Length was too small, the
            # rest of its body and the next header arrive as one line.
            m = _CONTENT_LENGTH.search(line)
            if m and len(m.group(1)) > MAX_LENGTH_DIGITS:
                log.warning("ignored a Content-Length of %d digits", len(m.group(1)))
                length = None
            elif m:
                length = int(m.group(1))
            continue
        if length is None:  # a blank line without a length: nothing to read
            continue
        n, length = length, None
        if n > MAX_BODY_BYTES:
            log.warning("skipping a message of %d bytes (limit %d)", n, MAX_BODY_BYTES)
            while n > 0:
                chunk = await reader.readexactly(min(n, _SKIP_CHUNK))
                if not chunk:
                    return
                n -= len(chunk)
            protocol.send_error(None, INVALID_REQUEST,
                                f"message larger than {MAX_BODY_BYTES} bytes: skipped")
            continue
        body = await reader.readexactly(n)
        if len(body) < n:
            return  # EOF in the middle of a body
        protocol.handle_body(body)
