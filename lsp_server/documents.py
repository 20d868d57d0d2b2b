"""Open documents as the server sees them: text, version, language, line index.

Incremental `didChange` events are applied with `positions.apply_change` in the position
encoding negotiated at `initialize`. Jobs take an immutable `Snapshot`, and a result is
only used if the document still has the snapshot's version when the job ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from lsp_server.positions import UTF16, LineIndex


@dataclass(frozen=True)
class Snapshot:
    uri: str
    text: str
    version: int
    language: str
    index: LineIndex = field(compare=False, repr=False)

    def offset(self, line: int, character: int, encoding: str = UTF16) -> int:
        return self.index.offset(line, character, encoding)

    def position(self, offset: int, encoding: str = UTF16) -> tuple[int, int]:
        return self.index.position(offset, encoding)


class DocumentNotOpen(KeyError):  # noqa: N818 - the message reads as the state
    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.uri = uri

    def __str__(self) -> str:
        return f"document {self.uri} is not open (no textDocument/didOpen, or it was closed)"


class DocumentStore:
    def __init__(self) -> None:
        self._docs: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def open(self, uri: str, text: str, version: int, language: str) -> Snapshot:
        snap = Snapshot(uri, text, version, language, LineIndex(text))
        with self._lock:
            self._docs[uri] = snap
        return snap

    def change(
        self, uri: str, version: int,
        changes: list[tuple[tuple[int, int], tuple[int, int], str] | str],
        encoding: str = UTF16,
    ) -> Snapshot:
        """Apply changes in order: (start, end, text) for a range, a bare str for full text."""
        with self._lock:
            doc = self._docs.get(uri)
            if doc is None:
                raise DocumentNotOpen(uri)
            index = doc.index
            for ch in changes:
                if isinstance(ch, str):
                    index = LineIndex(ch)
                else:
                    start, end, new_text = ch
                    index = index.changed(start, end, new_text, encoding)
            snap = Snapshot(uri, index.text, version, doc.language, index)
            self._docs[uri] = snap
        return snap

    def close(self, uri: str) -> None:
        with self._lock:
            self._docs.pop(uri, None)

    def get(self, uri: str) -> Snapshot | None:
        with self._lock:
            return self._docs.get(uri)

    def require(self, uri: str) -> Snapshot:
        snap = self.get(uri)
        if snap is None:
            raise DocumentNotOpen(uri)
        return snap

    def __len__(self) -> int:
        return len(self._docs)
