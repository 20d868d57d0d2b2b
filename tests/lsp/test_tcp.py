"""`diffusion-lsp serve --tcp`: the same hardened read loop as stdio, over a socket."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading

import pytest

from dlsp_benchmarks.soak import frame

DEADLINE = 120.0


def _frame(msg: dict) -> bytes:
    return frame(json.dumps(msg).encode())


class SocketClient:
    """Frames in, frames out; every wait is a blocking read with a deadline."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> dict | None:
        length = None
        while True:
            line = self.file.readline()
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("ascii").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        assert length is not None
        return json.loads(self.file.read(length))

    def response(self, request_id) -> dict:
        while (msg := self.read()) is not None:
            if msg.get("id") == request_id and "method" not in msg:
                return msg
            if "method" in msg and "id" in msg:  # answer the server's own requests
                self.send(_frame({"jsonrpc": "2.0", "id": msg["id"], "result": None}))
        raise AssertionError(f"connection closed before the response to {request_id}")


@pytest.fixture
def tcp_server():
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsp_server", "--tcp", "127.0.0.1:0", "--threads", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [*map(lines.put, proc.stderr), lines.put("")], daemon=True).start()
    port = None
    while port is None:
        line = lines.get(timeout=DEADLINE)
        assert line, f"the server ended before listening (exit code {proc.wait()})"
        if "listening on" in line:
            port = int(line.rsplit(":", 1)[1])
    yield proc, port
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=DEADLINE)


def test_tcp_recovers_from_bad_frames_answers_and_exits_cleanly(tcp_server, tiny_model):
    proc, port = tcp_server
    c = SocketClient(port)
    # A header line longer than the stream's buffer limit, a frame whose body is not JSON,
    # and a request before `initialize`: each gets its answer and the stream stays in sync.
    c.send(b"X" * 200_000 + b"\r\n\r\n")
    c.send(b"Content-Length: 5\r\n\r\n{oops")
    assert c.read()["error"]["code"] == -32700
    c.send(_frame({"jsonrpc": "2.0", "id": 1, "method": "textDocument/completion", "params": {
        "textDocument": {"uri": "file:///a.py"}, "position": {"line": 0, "character": 0}}}))
    assert c.response(1)["error"]["code"] == -32002  # ServerNotInitialized
    # a second editor is turned away: one client per server process, as over stdio
    other = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    assert other.recv(1) == b""
    other.close()
    c.send(_frame({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
        "processId": None, "rootUri": None, "capabilities": {},
        "initializationOptions": {"modelPath": tiny_model}}}))
    assert "capabilities" in c.response(2)["result"]
    c.send(_frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    c.send(_frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
    done = c.response(3)
    assert "result" in done and done["result"] is None, done
    c.send(_frame({"jsonrpc": "2.0", "method": "exit"}))
    assert proc.wait(timeout=DEADLINE) == 0


def test_tcp_exit_without_shutdown_is_code_1(tcp_server):
    proc, port = tcp_server
    SocketClient(port).send(_frame({"jsonrpc": "2.0", "method": "exit"}))
    assert proc.wait(timeout=DEADLINE) == 1


def test_tcp_client_closing_the_socket_ends_the_server(tcp_server):
    proc, port = tcp_server
    SocketClient(port).sock.close()  # as a closed stdin does over stdio
    assert proc.wait(timeout=DEADLINE) == 0


def test_tcp_survives_the_messages_that_killed_it(tcp_server):
    """Issue 23, case 1 over TCP: 5,000 digits of Content-Length, and 1,000 levels of
    nesting (bare and inside params), used to end the process."""
    proc, port = tcp_server
    c = SocketClient(port)
    c.send(b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n")
    c.send(frame(b"[" * 1000 + b"]" * 1000))
    assert c.read()["error"]["code"] == -32700
    deep = b"[" * 1000 + b"]" * 1000
    c.send(frame(b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": '
                 b'{"capabilities": {}, "x": ' + deep + b"}}"))
    assert c.read()["error"]["code"] == -32700
    c.send(_frame({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
        "processId": None, "rootUri": None, "capabilities": {}}}))
    assert "capabilities" in c.response(2)["result"]
    assert proc.poll() is None
