"""Issue 23, an outside raw JSON-RPC harness: the cases that killed, hung or fooled the
real server subprocess (dlsp_benchmarks.soak.RawClient over stdio; TCP in test_tcp.py).

1 one message kills the server; 3 FIFOs and /dev/zero in the model and cache directories;
5 wrong-typed fields coerced; 6 model switching races; 9 protocol details. Each test
failed before its fix. One server for the protocol cases (file order), one for the model
cases.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from dlsp_benchmarks.soak import frame
from dlsp_cache import spill
from tests.stress.helpers import (
    assert_same_text,
    change,
    completion,
    doc,
    open_doc,
    pos,
    rng,
    start_server,
)

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602
STATUS = {"command": "diffusion-lsp.status"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("round2")
    shared = tmp / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)  # case 9: the warning must reach the user, not only stderr
    c = start_server(tmp)
    c.initialize({"modelPath": tiny_model, "maxTokens": 4, "blockSize": 4,
                  "cacheDir": str(shared)})
    s = c.wait_model()
    assert s["model"] is not None, s
    c.spill_dir = shared
    c.model_hash = s["model"]["hash"]
    yield c
    c.close()


def ok(c) -> None:
    resp = c.wait_response(c.request("workspace/executeCommand", STATUS), 60)
    assert "result" in resp, resp


def error_of(c, msg_id) -> dict:
    resp = c.wait_response(msg_id, 60)
    assert "error" in resp and "result" not in resp, resp
    return resp["error"]


def _raw_request(msg_id: str, params: str) -> bytes:
    return ('{"jsonrpc": "2.0", "id": ' + msg_id
            + ', "method": "workspace/executeCommand", "params": ' + params + "}").encode()


def _status_with(arguments: str) -> str:
    return '{"command": "diffusion-lsp.status", "arguments": ' + arguments + "}"


# -- 1: one message kills the server ----------------------------------------------------
def test_a_content_length_of_5000_digits_is_garbage(server):
    server.send_bytes(b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n")
    ok(server)
    ok(server)
    assert server.proc.poll() is None


def test_deep_nesting_is_a_parse_error(server):
    server.send_bytes(frame(b"[" * 1000 + b"]" * 1000))
    assert error_of(server, None)["code"] == PARSE_ERROR
    deep = "[" * 1000 + "]" * 1000
    server.send_bytes(frame(_raw_request('"deep"', _status_with(deep))))
    assert error_of(server, None)["code"] == PARSE_ERROR
    # nesting below the limit, brackets inside strings and numbers at their limits: fine
    fine = "[" * 90 + '"[[[[{{{{"' + "]" * 90
    args = "[" + fine + ", 1e308, -1e999, " + "9" * 4000 + "]"
    server.send_bytes(frame(_raw_request('"fine"', _status_with(args))))
    assert "result" in server.wait_response("fine", 60)
    server.send_bytes(frame(_raw_request('"huge"', _status_with("[" + "9" * 5000 + "]"))))
    assert error_of(server, None)["code"] == PARSE_ERROR  # int() refuses 5000 digits
    ok(server)


def test_a_header_line_without_end_is_bounded_and_skipped(server):
    server.send_bytes(b"X-Junk: " + b"a" * 3_000_000 + b"\r\n")
    ok(server)  # the frame after the garbage line is answered
    server.send_bytes(b"b" * 100_000 + b"Content-Length: 2\r\n\r\n{}")  # glued header found
    assert error_of(server, None)["code"] == INVALID_REQUEST
    ok(server)


# -- 5: wrong types are refused, not coerced ---------------------------------------------
def test_did_change_with_wrong_types_changes_nothing(server):
    uri = "file:///typed.py"
    open_doc(server, uri, "a = 1\nb = 2\n")
    for text in (None, 5, True, ["x"]):
        change(server, uri, 2, [{"text": text}])
    for version in ("7", 7.5, True, None):
        server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                 "contentChanges": [{"text": "zzz"}]})
    for line in ("1", 1.9, True):
        change(server, uri, 3, [{"range": {"start": {"line": line, "character": 0},
                                           "end": pos(1, 0)}, "text": "Q"}])
    change(server, uri, 4, [{"range": rng((0, 0), (0, 0)), "text": 3}])
    assert_same_text(server, uri, "a = 1\nb = 2\n", 1)
    change(server, uri, 5, [{"range": rng((1, 0), (1, 1)), "text": "c"}])  # a good one
    assert_same_text(server, uri, "a = 1\nc = 2\n", 5)


@pytest.mark.parametrize("position", [
    {"line": "1", "character": 0}, {"line": 1.5, "character": 0}, {"line": True, "character": 0},
    {"line": 1, "character": "0"}, {"line": 1, "character": None}, {"line": 1.0, "character": 0},
])
def test_completion_with_wrong_typed_positions_on_an_open_document(server, position):
    uri = "file:///typed-open.py"
    open_doc(server, uri, "x = 1\ny = 2\n")
    for method in ("textDocument/completion", "textDocument/inlineCompletion"):
        params = {**doc(uri), "position": position, "context": {"triggerKind": 1}}
        err = error_of(server, server.request(method, params))
        assert err["code"] == INVALID_PARAMS and "position" in err["message"], err
    assert "result" in completion(server, uri, 1, 0)  # the same document, typed right


# -- 9: protocol details -----------------------------------------------------------------
@pytest.mark.parametrize("bad_id", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(server, bad_id):
    server.send_bytes(frame(_raw_request(bad_id, json.dumps(STATUS))))
    assert error_of(server, None)["code"] == PARSE_ERROR
    server.drain()
    assert not [k for k in server.responses if isinstance(k, float)]  # never echoed
    ok(server)


@pytest.mark.parametrize("message, answer_id", [
    ({"jsonrpc": "2.0", "id": 77}, 77),  # an id, no method, no result
    ({"jsonrpc": "2.0", "id": 78, "method": "$/cancelRequest", "params": {"id": 1}}, 78),
    ({"jsonrpc": "2.0", "id": 79, "method": "$/setTrace", "params": {"value": "off"}}, 79),
    ({"jsonrpc": "2.0", "id": 80, "method": "initialized", "params": {}}, 80),
    ({"jsonrpc": "2.0", "id": 81, "method": 42, "params": {}}, 81),
    ({"jsonrpc": "2.0", "id": 1.5, "method": "workspace/executeCommand", "params": STATUS}, None),
    ({"jsonrpc": "2.0", "id": [1], "method": "workspace/executeCommand", "params": STATUS}, None),
])
def test_malformed_envelopes_are_invalid_requests(server, message, answer_id):
    server.send(message)
    assert error_of(server, answer_id)["code"] == INVALID_REQUEST
    ok(server)


def test_a_uri_with_a_lone_surrogate_completes_with_a_cache_dir(server):
    uri = "file:///odd\ud800name.py"  # json.dumps sends the escape \ud800
    open_doc(server, uri, "def f(x):\n    return x\n")
    for _ in range(2):
        resp = completion(server, uri, 1, 4)
        assert "result" in resp, resp
    server.notify("textDocument/didClose", doc(uri))  # spilled under a hashed name
    open_doc(server, uri, "def f(x):\n    return x\n")
    assert "result" in completion(server, uri, 1, 4)
    assert server.status()["cache"]["spill_errors"] == 0


def test_the_open_cache_directory_warning_reaches_the_client(server):
    msg = server.wait_notification(
        lambda m: m["method"] == "window/showMessage"
        and "accessible to other users" in m["params"]["message"], 30)
    assert msg["params"]["type"] == 2  # Warning


# -- 3: FIFOs, devices and symlinks at a spill file's name ---------------------------------
@pytest.mark.parametrize("plant", ["fifo", "dev-zero", "symlink"])
def test_planted_spill_files_never_hang_or_get_read(server, plant, tmp_path):
    uri = f"file:///planted-{plant}.py"
    path = server.spill_dir / spill.spill_name(server.model_hash, uri)
    target = tmp_path / "someone-elses.kv"
    target.write_bytes(b"not yours")
    if plant == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero" if plant == "dev-zero" else target)
    before = server.status()["cache"]["rejected_spill_files"]
    open_doc(server, uri, "def g(y):\n    return y\n")
    resp = completion(server, uri, 1, 4)  # timed out (FIFO) / 5.5 GB (/dev/zero) before
    assert "result" in resp, resp
    assert server.status()["cache"]["rejected_spill_files"] == before + 1
    assert not os.path.lexists(path) and target.read_bytes() == b"not yours"


# -- 3 and 6: the model directory, and switching models -----------------------------------
@pytest.fixture(scope="module")
def switcher(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("switch")
    c = start_server(tmp)
    c.initialize({"modelPath": tiny_model, "maxTokens": 4, "blockSize": 4})
    assert c.wait_model()["model"] is not None
    c.tmp = tmp
    yield c
    c.close()


def _model_copy(tiny_model, tmp, name):
    d = tmp / name
    shutil.copytree(tiny_model, d)
    return d


def _switch(c, path) -> None:
    c.notify("workspace/didChangeConfiguration", {"settings": {"diffusionLsp": {
        "modelPath": str(path)}}})


@pytest.mark.parametrize("plant", ["fifo", "dev-zero"])
def test_a_fifo_or_dev_zero_training_json_fails_the_load_instead_of_hanging(
        switcher, tiny_model, plant):
    d = _model_copy(tiny_model, switcher.tmp, f"model-{plant}")
    (d / "training.json").unlink()
    if plant == "fifo":
        os.mkfifo(d / "training.json")
    else:
        (d / "training.json").symlink_to("/dev/zero")
    n = len(switcher.notifications)
    _switch(switcher, d)
    shown = switcher.wait_notification(
        lambda m: m["method"] == "window/showMessage" and m["params"]["type"] == 1, 60, n)
    assert "not a regular file" in shown["params"]["message"], shown
    s = switcher.status()
    assert s["loading"] is False and s["model"] is None and "training.json" in s["model_error"]
    open_doc(switcher, "file:///m.py", "x = 1\n")
    assert completion(switcher, "file:///m.py", 0, 1)["result"]["items"] == []
    _switch(switcher, tiny_model)
    assert switcher.wait_model()["model"] is not None


def _truncated(tiny_model, tmp, name):
    d = _model_copy(tiny_model, tmp, name)
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    return d


def _settled(c, want_path) -> dict:
    """The status once no load is running or queued and settings name `want_path`."""
    while True:
        s = c.wait_model()
        if not s["loading"] and s["worker"]["queued"] == 0 and not s["worker"]["running"]:
            assert s["settings"]["modelPath"] == str(want_path)
            return s
        n = len(c.notifications)
        c.wait_notification(lambda _m: True, 60, n)


def test_switching_to_a_good_then_a_broken_model_leaves_no_model(switcher, tiny_model):
    good = _model_copy(tiny_model, switcher.tmp, "good-1")
    bad = _truncated(tiny_model, switcher.tmp, "bad-1")
    _switch(switcher, good)
    _switch(switcher, bad)
    s = _settled(switcher, bad)
    assert s["model"] is None, s["model"]  # the good one must not serve under bad's name
    assert "truncated or corrupted" in s["model_error"]


def test_switching_to_a_broken_then_a_good_model_leaves_no_stale_error(switcher, tiny_model):
    first = _model_copy(tiny_model, switcher.tmp, "first-2")
    good = _model_copy(tiny_model, switcher.tmp, "good-2")
    bad = _truncated(tiny_model, switcher.tmp, "bad-2")
    _switch(switcher, first)  # keeps the worker busy: the next two wait in its queue
    _switch(switcher, bad)
    _switch(switcher, good)
    s = _settled(switcher, good)
    assert s["model"] is not None and s["model"]["path"] == str(good)
    assert s["model_error"] is None
