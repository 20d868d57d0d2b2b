"""Unusual content against the real server, run under an audit guard (tests/stress/guard.py).

Empty files, a 5 MB file, a 50,000-character line, binary bytes (NUL, control
characters, lone surrogates that JSON can carry), every kind of Unicode (emoji, ZWJ
sequences, combining marks, BOM, CRLF and CR line ends) and languages the model never
saw. Every request must be answered with a result, and the server's copy of every
document must stay equal to the client's.

The same session checks safety: the guard records (and blocks) any network access,
unpickling or program start inside the server, and every file it opens for writing;
the files the editor works on must keep their bytes and mtime.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.stress.helpers import (
    EMOJI,
    apply_changes,
    assert_same_text,
    code_actions,
    completion,
    open_doc,
    rng,
    start_ready,
    traceback_count,
)
from tests.stress.helpers import change as send_change

LINE = "    value = compute(alpha, beta) + other_thing * 3  # a comment\n"
FIVE_MB = ("def f():\n" + LINE * 50) * (5 * 2**20 // (len(LINE) * 50 + 9) + 1)
CONTENT = {
    "empty.py": ("python", ""),
    "big.py": ("python", FIVE_MB),
    "one_line.py": ("python", "x = [" + "a_1, " * 10_000 + "]"),
    "binary.bin": ("plaintext", bytes(range(256)).decode("latin-1") * 4),
    "nul.py": ("python", "a = 1\x00\x01\x02\x7f\nb = '\x1b[31m'\n"),
    "unicode.py": ("python", f"s = '{EMOJI}\U0001f9d1\u200d\U0001f4bb e\u0301 中文'\n"
                             f"# \u202eRTL\u202c \ufeff tab\there\n"),
    "crlf.py": ("python", "def f():\r\n    return 1\r\n\r\nprint(f())\r\n"),
    "cr.py": ("python", "def f():\r    return 1\rprint(f())"),
    "mixed.py": ("python", "a = 1\r\nb = 2\rc = 3\nd = 4"),
    "main.rs": ("rust", "fn main() {\n    let v: Vec<u8> = vec![1, 2];\n    println!(\"{:?}\", v);\n}\n"),
    "Main.hs": ("haskell", "main :: IO ()\nmain = putStrLn \"hi\"\n"),
    "prog.cob": ("cobol", "       IDENTIFICATION DIVISION.\n       PROGRAM-ID. HELLO.\n"),
}
# A lone surrogate and a NUL can only arrive as JSON escapes (no file decodes to them).
LONE = "x = '\ud800' + '\udc00'\ny = 2\n"


@pytest.fixture(scope="module")
def session(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("content")
    ws = tmp / "workspace"
    ws.mkdir()
    files = {}
    for name, (_lang, text) in CONTENT.items():
        p = ws / name
        p.write_bytes(text.encode("utf-8"))
        files[name] = p
    stamps = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files.values()}
    audit = tmp / "audit.jsonl"
    cache_dir = tmp / "cache"
    c = start_ready(tmp, tiny_model, {"cacheDir": str(cache_dir), "cacheBudgetMb": 0.3},
                    guard_log=audit)
    yield {"client": c, "files": files, "stamps": stamps, "audit": audit, "cache": cache_dir,
           "tmp": tmp, "timings": {}}
    c.close()


def _uri(p: Path) -> str:
    return p.as_uri()


def _positions(text: str) -> list[tuple[int, int]]:
    lines = text.splitlines() or [""]
    n = len(lines)
    mid = lines[n // 2]
    return [(0, 0), (n // 2, len(mid) // 2), (n - 1, len(lines[-1])), (n + 5, 3), (0, 10**6)]


def test_every_kind_of_content_is_served_and_stays_in_sync(session):
    c = session["client"]
    timings = session["timings"]
    for name, (lang, text) in CONTENT.items():
        uri = _uri(session["files"][name])
        t0 = time.perf_counter()
        open_doc(c, uri, text, lang)
        assert_same_text(c, uri, text, 1)
        timings[f"{name}: open+check"] = time.perf_counter() - t0
        for i, (line, ch) in enumerate(_positions(text)):
            t0 = time.perf_counter()
            resp = completion(c, uri, line, ch, inline=i % 2 == 1)
            timings.setdefault(f"{name}: completion (max)", 0.0)
            timings[f"{name}: completion (max)"] = max(timings[f"{name}: completion (max)"],
                                                      time.perf_counter() - t0)
            assert "result" in resp, (name, line, ch, resp)
        t0 = time.perf_counter()
        resp = code_actions(c, uri, (0, 0), (0, 0))
        assert "result" in resp, (name, resp)
        actions = [a for a in resp["result"] or [] if not a.get("disabled")]
        if actions:
            done = c.wait_response(c.request("codeAction/resolve", actions[0]), 120)
            # a repair either proposes an edit or fails with a clear RequestFailed
            assert "result" in done or done["error"]["code"] == -32803, (name, done)
        timings[f"{name}: code action + resolve"] = time.perf_counter() - t0
        # an edit in the middle, then a full check
        lines = text.splitlines() or [""]
        edit = [{"range": rng((len(lines) // 2, 1), (len(lines) // 2, 3)), "text": f"{EMOJI}\r\n"}]
        t0 = time.perf_counter()
        send_change(c, uri, 2, edit)
        assert_same_text(c, uri, apply_changes(text, edit), 2)
        timings[f"{name}: edit+check"] = time.perf_counter() - t0
    # nothing took the server down, and no request needed a traceback
    assert c.proc.poll() is None
    assert traceback_count(c.stderr_text()) == 0, c.stderr_tail()
    (session["tmp"] / "timings.json").write_text(json.dumps(timings, indent=1))


def test_lone_surrogates_and_nul_over_json(session):
    c = session["client"]
    uri = "untitled:lone-surrogates"
    # json.dumps writes lone surrogates as \\ud800 escapes, as a client's JSON encoder would
    open_doc(c, uri, LONE)
    assert_same_text(c, uri, LONE, 1)
    for line, ch in [(0, 5), (0, 6), (0, 14), (1, 5)]:
        resp = completion(c, uri, line, ch)
        assert "result" in resp, resp
    resp = code_actions(c, uri, (0, 0), (1, 0))
    (action,) = resp["result"]
    done = c.wait_response(c.request("codeAction/resolve", action), 120)
    assert "result" in done, done
    edit = [{"range": rng((0, 5), (0, 6)), "text": "\ud83d"}, {"text": LONE + "\x00"}]
    send_change(c, uri, 2, edit)
    assert_same_text(c, uri, LONE + "\x00", 2)


def test_big_file_edits_stay_fast_and_in_sync(session):
    c = session["client"]
    uri = _uri(session["files"]["big.py"])
    text = apply_changes(FIVE_MB, [{"range": rng((len(FIVE_MB.splitlines()) // 2, 1),
                                                 (len(FIVE_MB.splitlines()) // 2, 3)),
                                    "text": f"{EMOJI}\r\n"}])
    t0 = time.perf_counter()
    for v in range(3, 8):  # 5 keystrokes at the end of line 100
        edit = [{"range": rng((100, len(LINE) - 1), (100, len(LINE) - 1)), "text": "z"}]
        send_change(c, uri, v, edit)
        text = apply_changes(text, edit)
    assert_same_text(c, uri, text, 7)
    per_edit = (time.perf_counter() - t0) / 5
    session["timings"]["big.py: per keystroke (5 edits)"] = per_edit
    resp = completion(c, uri, 100, len(LINE))
    assert "result" in resp


def test_server_never_writes_user_files_fetches_or_unpickles(session):
    c = session["client"]
    s = c.status()
    assert s["cache"]["spill_enabled"] and s["cache"]["evictions"] > 0  # spills were exercised
    events = [json.loads(line) for line in session["audit"].read_text().splitlines()]
    kinds = {e["event"] for e in events}
    forbidden = kinds & {"socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
                         "socket.gethostbyname", "urllib.Request", "pickle.find_class",
                         "subprocess.Popen", "os.system", "os.exec", "os.fork"}
    assert not forbidden, [e for e in events if e["event"] in forbidden]
    assert "subprocess.Popen-analysis" in kinds  # diagnostics ran in the server's own child
    cache = str(session["cache"].resolve())
    writes = [e for e in events if e["event"] in ("open-write", "os.rename", "os.remove")]
    outside = [e for e in writes
               if not all(str(Path(p).resolve()).startswith(cache)
                          for p in ([e["detail"]] if isinstance(e["detail"], str) else e["detail"]))]
    assert not outside, outside
    assert any(e["event"] == "open-write" for e in writes)  # the guard does see writes
    for p, (data, mtime) in session["stamps"].items():
        assert p.read_bytes() == data and p.stat().st_mtime_ns == mtime, p


def test_exit_without_shutdown_exits_with_code_1(session):
    c = session["client"]
    c.notify("exit")
    assert c.wait_exit(60) == 1
