"""A small msgpack-RPC client for `nvim --embed`: requests with a deadline, nothing else.

Neovim's API over stdio is msgpack-RPC: we send `[0, msgid, method, args]` and read
`[1, msgid, error, result]`. Notifications (`[2, method, args]`, e.g. `nvim_error_event`)
are kept for the error report. Every read has a deadline, so a stuck editor fails the test
instead of hanging it.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import msgpack


class NvimError(RuntimeError):
    """An API call failed (the error Neovim sent back) or timed out."""


class Nvim:
    def __init__(self, argv: list[str], env: dict[str, str], stderr_path: Path,
                 cwd: Path | None = None) -> None:
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            cwd=cwd,
        )
        self._unpacker = msgpack.Unpacker(raw=False, ext_hook=self._ext)
        self._next_id = 0
        self.notifications: list[Any] = []

    @staticmethod
    def _ext(code: int, data: bytes) -> int:
        return msgpack.unpackb(data)  # Buffer/Window/Tabpage handles -> int

    def request(self, method: str, *args: Any, timeout: float = 60.0) -> Any:
        self._next_id += 1
        msgid = self._next_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgpack.packb([0, msgid, method, list(args)], use_bin_type=True))
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            for msg in self._unpacker:
                if msg[0] == 1 and msg[1] == msgid:
                    if msg[2] is not None:
                        raise NvimError(f"{method} failed: {msg[2]}")
                    return msg[3]
                if msg[0] == 2:
                    self.notifications.append(msg[1:])
                elif msg[0] == 0:  # a request from nvim: we offer no methods
                    self._send([1, msg[1], "no such method", None])
            self._read(deadline, method)

    def _send(self, msg: list) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgpack.packb(msg, use_bin_type=True))
        self.proc.stdin.flush()

    def _read(self, deadline: float, method: str) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        left = deadline - time.monotonic()
        if left <= 0:
            raise NvimError(f"{method}: no answer from nvim in time\n{self.stderr_tail()}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            raise NvimError(f"{method}: no answer from nvim in time\n{self.stderr_tail()}")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise NvimError(f"{method}: nvim exited ({self.proc.wait()})\n{self.stderr_tail()}")
        self._unpacker.feed(chunk)

    # -- conveniences ---------------------------------------------------------------------
    def lua(self, code: str, *args: Any, timeout: float = 60.0) -> Any:
        return self.request("nvim_exec_lua", code, list(args), timeout=timeout)

    def input(self, keys: str) -> None:
        self.request("nvim_input", keys)

    def stderr_tail(self, n: int = 2000) -> str:
        self._stderr.flush()
        try:
            return self.stderr_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send([2, "nvim_command", ["qa!"]])
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
