"""Helpers of the robustness tests: a raw-client server session and LSP message builders."""

from __future__ import annotations

import sys
from pathlib import Path

from dlsp_benchmarks.soak import FAST, RawClient, ref_apply_change, text_sha256

GUARD = str(Path(__file__).with_name("guard.py"))
EMOJI = "\U0001f600"


def start_server(tmp: Path, *, guard_log: Path | None = None, log_level: str = "info") -> RawClient:
    """A server subprocess (optionally under the audit guard), not yet initialized."""
    args = ["--log-level", log_level]
    if guard_log is not None:
        command = [sys.executable, GUARD, str(guard_log), *args]
    else:
        command = [sys.executable, "-m", "lsp_server", *args]
    return RawClient(command, cwd=str(tmp), stderr_path=tmp / "server-stderr.log")


def start_ready(tmp: Path, model: str, options: dict | None = None, **kw) -> RawClient:
    """A server with the model loaded (fails the test if it does not load)."""
    c = start_server(tmp, **kw)
    c.initialize({"modelPath": model, **FAST, **(options or {})})
    s = c.wait_model()
    assert s["model"] is not None, s["model_error"]
    return c


def pos(line: int, character: int) -> dict:
    return {"line": line, "character": character}


def rng(a: tuple[int, int], b: tuple[int, int]) -> dict:
    return {"start": pos(*a), "end": pos(*b)}


def doc(uri: str) -> dict:
    return {"textDocument": {"uri": uri}}


def open_doc(c: RawClient, uri: str, text: str, language: str = "python", version: int = 1) -> None:
    c.notify("textDocument/didOpen", {"textDocument": {
        "uri": uri, "languageId": language, "version": version, "text": text}})


def change(c: RawClient, uri: str, version: int, changes: list[dict]) -> None:
    c.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                        "contentChanges": changes})


def apply_changes(text: str, changes: list[dict]) -> str:
    """The client's copy after a didChange (changes apply one after the other)."""
    for ch in changes:
        if "range" not in ch:
            text = ch["text"]
            continue
        r = ch["range"]
        text = ref_apply_change(text, (r["start"]["line"], r["start"]["character"]),
                                (r["end"]["line"], r["end"]["character"]), ch["text"])
    return text


def assert_same_text(c: RawClient, uri: str, text: str, version: int | None = None) -> None:
    state = c.document_state(uri)
    assert state["open"], state
    assert (state["length"], state["sha256"]) == (len(text), text_sha256(text)), (
        f"server copy of {uri} differs from the client's ({state})")
    if version is not None:
        assert state["version"] == version


def completion(c: RawClient, uri: str, line: int, character: int, *, inline: bool = False) -> dict:
    """The raw response (result or error) to a completion request."""
    params = {**doc(uri), "position": pos(line, character)}
    if inline:
        params["context"] = {"triggerKind": 1}
        return c.wait_response(c.request("textDocument/inlineCompletion", params), 120)
    return c.wait_response(c.request("textDocument/completion", params), 120)


def code_actions(c: RawClient, uri: str, a: tuple[int, int], b: tuple[int, int]) -> dict:
    return c.wait_response(c.request("textDocument/codeAction", {
        **doc(uri), "range": rng(a, b), "context": {"diagnostics": []}}), 120)


def traceback_count(text: str) -> int:
    return text.count("Traceback (most recent call last)")
