"""Run the language server under a Python audit hook that records (and blocks) what it must
never do: network access, unpickling, starting programs (but its own diagnostics child,
`lsp_server.analysis_process`, recorded as such); and records every file it opens for
writing, renames or deletes.

    python tests/stress/guard.py AUDIT_LOG [lsp_server arguments...]

Monkeypatching cannot reach into a server subprocess, so the hook is installed here, in
the subprocess itself, before `lsp_server` is imported (`sys.addaudithook`, PEP 578: the
interpreter raises these events for every socket, `pickle` class lookup, `open`,
`os.rename`... whatever library makes the call). Each event is one JSON line in
AUDIT_LOG. Blocked events raise PermissionError inside the server, so a violation also
fails loudly instead of silently succeeding.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_NET_FAMILIES = {socket.AF_INET, socket.AF_INET6}
_BLOCK = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
          "socket.gethostbyaddr", "urllib.Request", "pickle.find_class", "subprocess.Popen",
          "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork"}
_RECORD = {"os.rename", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree",
           "shutil.move", "os.link", "os.symlink"}


def _the_analysis_child(args: tuple) -> bool:
    """The one program the server may start: its diagnostics child, exactly as
    `lsp_server.analysis_process.child_command` spells it (our code, no user code)."""
    mod = sys.modules.get("lsp_server.analysis_process")
    return mod is not None and list(args[1]) == mod.child_command()


def install(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def emit(event: str, detail) -> None:
        line = json.dumps({"event": event, "detail": detail}, default=repr) + "\n"
        os.write(fd, line.encode("utf-8", "surrogatepass"))

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int):  # os.fdopen of a descriptor: its os.open was recorded
                return
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & _WRITE_FLAGS):
                emit("open-write", os.fsdecode(path))
        elif event in ("socket.connect", "socket.bind", "socket.sendto"):
            sock = args[0]
            if getattr(sock, "family", None) in _NET_FAMILIES:
                emit(event, repr(args[1:]))
                raise PermissionError(f"network access blocked by the test guard: {event}")
        elif event == "subprocess.Popen" and _the_analysis_child(args):
            emit("subprocess.Popen-analysis", repr(args)[:300])  # the server's own child
        elif event in _BLOCK:
            emit(event, repr(args)[:300])
            raise PermissionError(f"blocked by the test guard: {event}")
        elif event in _RECORD:
            emit(event, [str(a) for a in args[:2]])

    sys.addaudithook(hook)


if __name__ == "__main__":
    install(sys.argv[1])
    sys.argv = ["lsp_server", *sys.argv[2:]]
    runpy.run_module("lsp_server", run_name="__main__", alter_sys=True)
