"""JSON-RPC hardening on top of pygls: framing that recovers, and an answer for every request.

pygls (2.x) reads stdio with a strict header match and hands bad messages to a generic
exception handler, which leaves several cases unanswered or desynchronized:

- a message with a wrong `Content-Length` (or a garbled header) made every later message
  be read as garbage: the server never answered again;
- a body that is not JSON, or a request whose params have the wrong type (a negative
  line, a string instead of an object), got no response at all, so the client waited
  forever, plus a traceback on stderr and an "Error in server" pop-up;
- requests before `initialize` were served and requests after `shutdown` silently dropped.

`serve` (in `lsp_server.framing`, re-exported here) is the read loop (used by `DiffusionLanguageServer.start_io`, and by `start_tcp`
through `StreamReaderAdapter`) and `RobustProtocol` the protocol class. What they answer
(LSP 3.17 / JSON-RPC 2.0):

- unparsable body: error -32700 ParseError with `id: null`; a message that is not a
  JSON-RPC 2.0 object: -32600 InvalidRequest; params of the wrong shape: -32602
  InvalidParams for that request id (a bad notification is logged and ignored);
- before `initialize`: requests get -32002 ServerNotInitialized, notifications are
  dropped (except `exit`); a second `initialize` gets InvalidRequest;
- after `shutdown`: requests get -32600 InvalidRequest, notifications other than `exit`
  are dropped;
- the futures of notifications and of the handlers pygls' builtin generators call are
  dropped when done (pygls kept them all: every edit's params, a Task per command);
- a header line is found even when glued to the leftovers of a broken frame, so one bad
  frame costs at most the frame after it; bodies over `MAX_BODY_BYTES` are skipped in
  chunks (never allocated) and answered with InvalidRequest;
- bounds before anything is parsed: a header line is read at most `MAX_HEADER_LINE` bytes
  at a time (longer lines are garbage), a `Content-Length` of more than
  `MAX_LENGTH_DIGITS` digits is garbage (`int()` of 5,000 digits raised ValueError and
  killed the server), and a body nested deeper than `MAX_JSON_DEPTH` is a ParseError
  (`[` x 1000 raised RecursionError); `NaN`/`Infinity` are not JSON (they were echoed
  as an id, making the server's own answer invalid JSON);
- the message is checked as JSON-RPC 2.0 before pygls sees it: an id that is not a
  string or an integer, a `method` that is not a string, a message with an id but neither
  `method` nor `result`/`error`, and a notification method (`$/cancelRequest`...) sent
  with an id all get -32600 InvalidRequest;
- params are structured strictly against the LSP types: cattrs' default hooks coerce
  (`str(None)` became the text "None", `int("7")` a version), ours refuse any value whose
  JSON type is not the declared one (see `strict_converter`).

The document-sync notifications go straight to the server's handlers: pygls' own copy of
each document (never used here) doubled the memory of large files and turned an edit of
an unopened document into an error pop-up.
"""

from __future__ import annotations

import json
import logging
import re
from functools import partial
from typing import Any

import attrs
from lsprotocol import types as t
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from lsp_server.framing import (  # noqa: F401 - the read loop is part of this module's API
    INVALID_REQUEST,
    MAX_BODY_BYTES,
    MAX_HEADER_LINE,
    MAX_LENGTH_DIGITS,
    StdinReader,
    StreamReaderAdapter,
    serve,
)

log = logging.getLogger("lsp_server.rpc")

PARSE_ERROR = -32700
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002
MAX_JSON_DEPTH = 100  # arrays/objects inside each other; LSP messages nest about 10 deep
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INNERMOST = re.compile(rb"[\[{][^\[\]{}]*[\]}]")
_OPENING = re.compile(rb"[\[{]")


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if arrays/objects nest deeper than `limit` (or are unbalanced) outside strings.

    No Python loop over the bytes: strings are blanked, then each pass of a regex removes
    the innermost level; after `limit` passes any bracket left is too deep."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case, at C speed
    s = _JSON_STRING.sub(b'""', body)
    for _ in range(limit):
        s, n = _INNERMOST.subn(b"0", s)
        if n == 0:
            break
    return _OPENING.search(s) is not None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _strict(kind: type | tuple[type, ...], what: str):
    kinds = kind if isinstance(kind, tuple) else (kind,)

    def hook(value: Any, _type: Any) -> Any:
        if type(value) not in kinds:  # bool is not an int here, nor an int a str
            raise TypeError(f"expected {what}, got {_json_type(value)}")
        return float(value) if float in kinds else value

    return hook


def _json_type(value: Any) -> str:
    return {type(None): "null", bool: "a boolean", int: "an integer", float: "a number",
            str: "a string", list: "an array", dict: "an object"}.get(type(value), "a value")


def strict_converter(converter: Any) -> Any:
    """Make a cattrs converter refuse what its default hooks coerce: `str(None)`,
    `int("7")`, `int(1.9)`, `int(True)`. LSP integers are JSON integers, strings are
    strings, booleans are booleans; decimals may be integers or numbers."""
    converter.register_structure_hook(int, _strict(int, "an integer"))
    converter.register_structure_hook(str, _strict(str, "a string"))
    converter.register_structure_hook(bool, _strict(bool, "a boolean"))
    converter.register_structure_hook(float, _strict((int, float), "a number"))
    return converter


class _Refused(Exception):
    """A message answered with an error before it reaches pygls."""

    def __init__(self, msg_id: Any, code: int, message: str) -> None:
        super().__init__(message)
        self.msg_id, self.code, self.message = msg_id, code, message


def _is_notification_method(method: str) -> bool:
    kind = t.METHOD_TO_TYPES.get(method, (None,))[0]
    return kind is not None and attrs.has(kind) and "id" not in attrs.fields_dict(kind)


class _InvalidRequestParams(Exception):
    """A request (it has an id) whose params could not be read into the method's type."""

    def __init__(self, msg_id: Any, method: str, error: JsonRpcException) -> None:
        super().__init__(method)
        self.msg_id, self.method, self.error = msg_id, method, error


def _explain(error: JsonRpcException) -> str:
    """The cattrs validation messages behind an InvalidParams ("... @ $.position.line")."""
    cause = error.__cause__
    if cause is not None:
        try:
            from cattrs import transform_error

            return "; ".join(transform_error(cause, path="$")[:5])
        except Exception:  # not a cattrs error: fall back to its text
            return str(cause)
    return str(error)


def _valid_id(msg_id: Any) -> bool:
    return type(msg_id) in (str, int)


class _NoDeserializeTraceback(logging.Filter):
    """pygls logs a full traceback for every message it cannot read; we answer those
    with one line of our own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable to deserialize message")


logging.getLogger("pygls.protocol.json_rpc").addFilter(_NoDeserializeTraceback())


class RobustProtocol(LanguageServerProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        strict_converter(self._converter)
        self.initialize_received = False

    # -- answers -----------------------------------------------------------------------
    def send_error(self, msg_id: Any, code: int, message: str) -> None:
        """An error response; `id` is null when the request's id cannot be known."""
        self._send_data({"jsonrpc": "2.0", "id": msg_id if _valid_id(msg_id) else None,
                         "error": {"code": code, "message": message}})

    # -- reading -----------------------------------------------------------------------
    def structure_message(self, data: dict[str, Any]):
        """The top-level message (only: nested objects stay plain dicts for cattrs)."""
        if "method" in data and "params" not in data:  # JSON-RPC params are optional
            data = {**data, "params": None}
        try:
            return super().structure_message(data)
        except JsonRpcException as e:
            method = data.get("method")
            if isinstance(method, str) and "id" in data:
                raise _InvalidRequestParams(data["id"], method, e) from None
            raise

    @staticmethod
    def check_envelope(data: Any) -> None:
        """Raise `_Refused` unless `data` is a JSON-RPC 2.0 request, notification or response."""
        if not isinstance(data, dict) or "jsonrpc" not in data:
            msg_id = data.get("id") if isinstance(data, dict) else None
            raise _Refused(msg_id, INVALID_REQUEST, "not a JSON-RPC 2.0 message")
        msg_id = data.get("id")
        if data["jsonrpc"] != "2.0":
            raise _Refused(msg_id, INVALID_REQUEST,
                           f"unsupported JSON-RPC version {data['jsonrpc']!r}")
        if "id" in data and msg_id is not None and not _valid_id(msg_id):
            raise _Refused(None, INVALID_REQUEST,
                           f"the id must be a string or an integer, not {_json_type(msg_id)}")
        if "method" not in data:
            if "id" in data and "result" not in data and "error" not in data:
                raise _Refused(msg_id, INVALID_REQUEST,
                               "a message with an id needs a method (request) or a result "
                               "or error (response)")
            return
        method = data["method"]
        if not isinstance(method, str):
            raise _Refused(msg_id, INVALID_REQUEST,
                           f"the method must be a string, not {_json_type(method)}")
        if "id" in data and _is_notification_method(method):
            raise _Refused(msg_id, INVALID_REQUEST,
                           f"{method} is a notification: it is sent without an id")

    def handle_body(self, body: bytes) -> None:
        """One framed message: parse, validate, dispatch; anything bad gets its answer."""
        try:
            if too_deep(body):
                raise ValueError(f"arrays or objects nested deeper than {MAX_JSON_DEPTH} "
                                 "levels (or unbalanced)")
            data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
            log.warning("ignored a message that is not JSON: %s", e)
            self.send_error(None, PARSE_ERROR, f"parse error: {e}")
            return
        try:
            self.check_envelope(data)
            message = self.structure_message(data)
        except _Refused as e:
            log.warning("refused a message: %s", e.message)
            self.send_error(e.msg_id, e.code, e.message)
            return
        except _InvalidRequestParams as e:
            why = _explain(e.error)
            log.warning("invalid params for %s (id %r): %s", e.method, e.msg_id, why)
            self.send_error(e.msg_id, INVALID_PARAMS, f"invalid params for {e.method}: {why}")
            return
        except JsonRpcException as e:  # a notification or response of the wrong shape
            log.warning("ignored a message that does not fit its method: %s", e)
            return
        except RecursionError:  # cannot happen below MAX_JSON_DEPTH; never die of it
            log.warning("ignored a message too deep to structure")
            self.send_error(data.get("id"), INVALID_REQUEST, "message nested too deeply")
            return
        self.handle_message(message)

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        is_request = method is not None and hasattr(message, "id")
        if method == t.EXIT or method is None:  # exit, or a response to one of ours
            return super().handle_message(message)
        if not self.initialize_received:
            if is_request and method == t.INITIALIZE:
                self.initialize_received = True
                return super().handle_message(message)
            if is_request:
                self.send_error(message.id, SERVER_NOT_INITIALIZED,
                                f"{method}: the server is not initialized yet (send initialize)")
            else:
                log.debug("dropped %s before initialize", method)
            return None
        if self._shutdown:
            if is_request:
                self.send_error(message.id, INVALID_REQUEST,
                                f"{method}: the server is shutting down (only exit is accepted)")
            return None
        if is_request and method == t.INITIALIZE:
            self.send_error(message.id, INVALID_REQUEST, "initialize was already received")
            return None
        return super().handle_message(message)

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None):
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        if isinstance(callback, partial) and callback.func == self._send_handler_result:
            return  # a client request: pygls pops its future when it answers
        # A notification, or a handler a builtin generator (executeCommand, didChange...)
        # yields to: msg_id is a fresh uuid, and pygls keeps the future (with the params
        # and, for coroutines, the finished Task) in `_request_futures` forever: ~5 MB per
        # 1000 edits and a Task per command. Drop it once it is done.
        fut = self._request_futures.get(msg_id)
        if fut is None:
            return
        if fut.done():
            self._request_futures.pop(msg_id, None)
        else:
            fut.add_done_callback(lambda _f: self._request_futures.pop(msg_id, None))

    @lsp_method(t.SHUTDOWN)
    def lsp_shutdown(self, *args):
        """pygls' shutdown, but cancelling over a copy of `_request_futures`: cancelling a
        pending future runs the done-callback above at once (these are
        concurrent.futures), which popped from the dict pygls was iterating, and shutdown
        failed with "dictionary changed size during iteration" whenever it arrived while
        a notification's handler (e.g. the model load after `initialized`) still ran."""
        if (user_handler := self.fm.features.get(t.SHUTDOWN)) is not None:
            yield user_handler, args, None
        current_id = self.msg_id
        for msg_id, future in list(self._request_futures.items()):
            if msg_id != current_id and not future.done():
                future.cancel()
        self._shutdown = True
        return None

    # -- document sync: straight to the server's own document store ---------------------
    @lsp_method(t.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: t.DidOpenTextDocumentParams):
        if (handler := self.fm.features.get(t.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(t.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: t.DidChangeTextDocumentParams):
        if (handler := self.fm.features.get(t.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(t.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: t.DidCloseTextDocumentParams):
        if (handler := self.fm.features.get(t.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None
