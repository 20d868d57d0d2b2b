"""Protocol abuse over raw stdio against the real server (dlsp_benchmarks.soak.RawClient).

Malformed JSON, wrong or missing Content-Length, messages that are not JSON-RPC,
unknown methods, params of the wrong type, positions outside the document or inside a
surrogate pair, overlapping and out-of-order edits, documents never opened or already
closed, requests before `initialize` and after `shutdown`. Each gets the JSON-RPC error
the specification asks for (or is ignored, for notifications), and the server answers
the next valid request. One server for the module: the tests run in file order.
"""

from __future__ import annotations

import json

import pytest

from dlsp_benchmarks.soak import frame, text_sha256
from tests.stress.helpers import (
    EMOJI,
    apply_changes,
    assert_same_text,
    change,
    completion,
    doc,
    open_doc,
    pos,
    rng,
    start_server,
    traceback_count,
)

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
SERVER_NOT_INITIALIZED = -32002
STATUS = {"command": "diffusion-lsp.status"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("protocol")
    c = start_server(tmp)
    # Before initialize: a request, a notification (dropped), then initialize itself.
    pre = c.request("textDocument/completion", {**doc("file:///a.py"), "position": pos(0, 0)})
    open_doc(c, "file:///pre-init.py", "x = 1\n")
    c.before_init = c.wait_response(pre, 120)
    c.initialize({"modelPath": tiny_model, "maxTokens": 4, "blockSize": 4})
    c.wait_model()
    yield c
    c.close()


def ok(c, method: str = "workspace/executeCommand", params=None) -> None:
    """The server still answers a valid request."""
    resp = c.wait_response(c.request(method, params or STATUS), 60)
    assert "result" in resp, resp


def error_of(c, msg_id) -> dict:
    resp = c.wait_response(msg_id, 60)
    assert "error" in resp and "result" not in resp, resp
    return resp["error"]


def test_before_initialize(server):
    assert server.before_init["error"]["code"] == SERVER_NOT_INITIALIZED
    # the didOpen sent before initialize was dropped
    assert server.document_state("file:///pre-init.py")["open"] is False
    assert error_of(server, server.request("initialize", {"capabilities": {}}))["code"] == \
        INVALID_REQUEST  # only once


@pytest.mark.parametrize("body", [
    b'{"jsonrpc": "2.0", "id": 7, "method": ',  # cut short
    b"\xff\xfe not utf-8 \x00",
    b"",
    b"{'single': 'quotes'}",
    b'{"jsonrpc": "2.0", "id": 8, "method": "x", "params": {}} trailing',
])
def test_malformed_json_gets_a_parse_error(server, body):
    server.send_bytes(frame(body))
    assert error_of(server, None)["code"] == PARSE_ERROR  # id null: the id is unknown
    ok(server)


@pytest.mark.parametrize("message", [
    [], [{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}], 42, "text", None,
    {"id": 9, "method": "workspace/executeCommand", "params": STATUS},  # no "jsonrpc"
    {"jsonrpc": "1.0", "id": 10, "method": "workspace/executeCommand", "params": STATUS},
])
def test_not_a_json_rpc_request_is_an_invalid_request(server, message):
    server.send(message)
    err_id = message.get("id") if isinstance(message, dict) else None
    assert error_of(server, err_id)["code"] == INVALID_REQUEST
    ok(server)


def _status_frame(msg_id) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "workspace/executeCommand",
                       "params": STATUS}).encode()


def test_content_length_too_small_costs_one_message(server):
    body = _status_frame("short")
    server.send_bytes(b"Content-Length: %d\r\n\r\n" % (len(body) - 9) + body)
    assert error_of(server, None)["code"] == PARSE_ERROR
    after = [server.request("workspace/executeCommand", STATUS) for _ in range(3)]
    for rid in after:
        assert "result" in server.wait_response(rid, 60)


def test_content_length_too_large_swallows_the_next_frame_then_recovers(server):
    body = _status_frame("long")
    server.send_bytes(b"Content-Length: %d\r\n\r\n" % (len(body) + 10) + body)
    lost = server.request("workspace/executeCommand", STATUS)  # its first 10 bytes are eaten
    assert error_of(server, None)["code"] == PARSE_ERROR
    ok(server)
    server.drain()
    assert lost not in server.responses  # framing cannot save the swallowed frame


@pytest.mark.parametrize("header", [
    b"Content-Length: abc\r\n\r\n", b"Content-Type: text/plain\r\n\r\n",
    b"\r\n\r\n\r\n", b"garbage without a newline",
])
def test_bad_or_missing_headers_are_skipped(server, header):
    server.send_bytes(header)
    ok(server)  # one frame may be lost to the garbage; the next one is answered
    ok(server)


def test_header_names_are_case_insensitive_and_extra_headers_allowed(server):
    body = _status_frame("case")
    server.send_bytes(b"content-length: %d\r\nContent-Type: application/vscode-jsonrpc; "
                      b"charset=utf-8\r\n\r\n" % len(body) + body)
    assert "result" in server.wait_response("case", 60)


def test_unknown_methods(server):
    assert error_of(server, server.request("no/such/method", {}))["code"] == METHOD_NOT_FOUND
    assert error_of(server, server.request("no/params"))["code"] == METHOD_NOT_FOUND
    assert error_of(server, server.request("$/private", {}))["code"] == METHOD_NOT_FOUND
    server.notify("no/such/notification", {"x": 1})  # ignored
    server.notify("$/setTrace", {"value": "off"})
    server.notify("$/cancelRequest", {"id": 123456})  # an id never used: ignored
    resp = server.wait_response(server.request("workspace/executeCommand",
                                               {"command": "no.such.command"}), 60)
    assert "error" in resp
    ok(server)


@pytest.mark.parametrize("params", [
    "oops", [1, 2], None, {},
    {**doc("file:///w.py"), "position": {"line": -1, "character": 0}},
    {**doc("file:///w.py"), "position": {"line": "0", "character": 0}},
    {**doc("file:///w.py"), "position": {"line": 2**40, "character": 0}},
    {"textDocument": "file:///w.py", "position": pos(0, 0)},
])
def test_params_of_the_wrong_type(server, params):
    rid = server.request("textDocument/completion", params)
    assert error_of(server, rid)["code"] == INVALID_PARAMS
    ok(server)


def test_wrong_typed_notifications_are_ignored(server):
    uri = "file:///sync.py"
    open_doc(server, uri, "a = 1\n")
    server.notify("textDocument/didChange", {"textDocument": {"uri": uri},
                                             "contentChanges": "nope"})
    server.notify("textDocument/didOpen", {"textDocument": 5})
    server.notify("textDocument/didClose", None)
    assert_same_text(server, uri, "a = 1\n", 1)


def test_positions_outside_the_document_or_inside_a_surrogate_pair(server):
    uri = "file:///positions.py"
    text = f"s = '{EMOJI}{EMOJI}'\r\nt = 1\n"
    open_doc(server, uri, text)
    for line, ch in [(0, 6), (0, 8), (0, 5), (0, 999), (1, 10**9), (2, 0), (50, 50),
                     (2**31 - 1, 2**31 - 1)]:
        assert "result" in completion(server, uri, line, ch)
        assert "result" in completion(server, uri, line, ch, inline=True)
        resp = server.wait_response(server.request("textDocument/codeAction", {
            **doc(uri), "range": rng((line, ch), (line, ch)), "context": {"diagnostics": []}}), 60)
        assert "result" in resp, resp
    # a reversed range is a range too
    resp = server.wait_response(server.request("textDocument/codeAction", {
        **doc(uri), "range": rng((1, 3), (0, 2)), "context": {"diagnostics": []}}), 60)
    assert "result" in resp, resp


def test_overlapping_out_of_order_and_out_of_range_edits(server):
    uri = "file:///edits.py"
    text = f"line0 {EMOJI}\nline1\r\nline2\rline3"
    open_doc(server, uri, text)
    batches = [
        # later changes apply to the result of earlier ones, so these overlap
        [{"range": rng((0, 0), (0, 4)), "text": "L"}, {"range": rng((0, 0), (0, 2)), "text": "xy"}],
        # out of order: bottom first, then top
        [{"range": rng((3, 0), (3, 5)), "text": "end"}, {"range": rng((0, 0), (0, 0)), "text": "# "}],
        # reversed range, a range inside the emoji, past the end of a line and the document
        [{"range": rng((1, 3), (0, 1)), "text": "R"}, {"range": rng((0, 6), (0, 7)), "text": "|"},
         {"range": rng((0, 999), (0, 999)), "text": "E"}, {"range": rng((99, 0), (120, 5)),
                                                          "text": "\nEOF"}],
        # delete everything with an oversized range, then insert into the empty document
        [{"range": rng((0, 0), (10**6, 10**6)), "text": ""}, {"range": rng((5, 5), (5, 5)),
                                                               "text": "fresh\r\n"}],
        [{"text": f"full {EMOJI}"}, {"range": rng((0, 6), (0, 6)), "text": "mid-pair"}],
    ]
    for v, changes in enumerate(batches, start=2):
        change(server, uri, v, changes)
        text = apply_changes(text, changes)
        assert_same_text(server, uri, text, v)


def test_documents_never_opened_or_already_closed(server):
    uri = "file:///closed.py"
    open_doc(server, uri, "x = 1\n")
    server.notify("textDocument/didClose", doc(uri))
    server.notify("textDocument/didClose", doc(uri))  # twice: ignored
    change(server, uri, 5, [{"text": "y"}])  # ignored, nothing reopened
    for u in (uri, "file:///never.py"):
        for inline in (False, True):
            assert completion(server, u, 0, 0, inline=inline)["error"]["code"] == INVALID_PARAMS
        rid = server.request("textDocument/codeAction", {**doc(u), "range": rng((0, 0), (0, 0)),
                                                         "context": {"diagnostics": []}})
        assert error_of(server, rid)["code"] == INVALID_PARAMS
        rid = server.request("codeAction/resolve", {"title": "Repair this block", "data": {
            "uri": u, "version": 1, "startLine": 0, "endLine": 0}})
        assert error_of(server, rid)["code"] == INVALID_PARAMS
    rid = server.request("codeAction/resolve", {"title": "x", "data": "not ours"})
    assert error_of(server, rid)["code"] == INVALID_PARAMS
    assert server.document_state(uri) == {"uri": uri, "open": False}
    # reopening starts from the new text
    open_doc(server, uri, "z = 3\n", version=9)
    st = server.document_state(uri)
    assert st["version"] == 9 and st["sha256"] == text_sha256("z = 3\n")


def test_no_traceback_spam_then_shutdown_refuses_requests(server):
    ok(server)
    # expected errors are one log line each, not a traceback
    assert traceback_count(server.stderr_text()) == 0, server.stderr_tail()
    assert not [n for n in server.notifications if n["method"] == "window/showMessage"
                and "Error in server" in n["params"]["message"]]
    assert server.call("shutdown") is None
    for method, params in [("workspace/executeCommand", STATUS),
                           ("textDocument/completion", {**doc("file:///a.py"),
                                                        "position": pos(0, 0)})]:
        assert error_of(server, server.request(method, params))["code"] == INVALID_REQUEST
    server.notify("textDocument/didOpen", {"textDocument": {
        "uri": "file:///late.py", "languageId": "python", "version": 1, "text": ""}})
    server.notify("exit")
    assert server.wait_exit(60) == 0


def test_shutdown_while_the_model_still_loads(tmp_path, tiny_model):
    # `initialized` starts the model load; a shutdown right behind it cancels that pending
    # handler, which used to fail the shutdown ("dictionary changed size during iteration").
    c = start_server(tmp_path)
    try:
        c.initialize({"modelPath": tiny_model})
        assert c.shutdown_and_exit() == 0
        assert traceback_count(c.stderr_text()) == 0, c.stderr_tail()
    finally:
        c.close()
