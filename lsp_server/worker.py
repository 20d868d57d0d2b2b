"""One worker thread for all model work, with cooperative cancellation.

The machine may have two cores: one thread runs jobs one after another, off the asyncio
event loop. Each job gets a `CancelToken`; the engine polls it between denoising steps and
raises `Cancelled`. Submitting with a `key` (e.g. ("complete", uri)) cancels the earlier
job with the same key, so a newer completion request supersedes an older one; a job whose
token was set before it started never runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from diffusion_core.errors import Cancelled


class CancelToken:
    """A thread-safe flag; calling the token returns whether it is set (the engine's
    `cancel=` callable)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()


class Worker:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffusion-job")
        self._lock = threading.Lock()
        self._by_key: dict[Any, CancelToken] = {}
        self.running: str | None = None  # label of the job in progress (for status)
        self.queued = 0

    def submit(
        self, fn: Callable[[CancelToken], Any], *, key: Any = None, label: str = "job"
    ) -> tuple[Future, CancelToken]:
        """Queue `fn(token)`; a previous job with the same key is cancelled (superseded)."""
        token = CancelToken()
        with self._lock:
            if key is not None:
                old = self._by_key.get(key)
                if old is not None:
                    old.cancel("superseded")
                self._by_key[key] = token
            self.queued += 1

        def run():
            with self._lock:
                self.queued -= 1
            try:
                if token.cancelled:
                    raise Cancelled()
                self.running = label
                return fn(token)
            finally:
                self.running = None
                with self._lock:
                    if key is not None and self._by_key.get(key) is token:
                        del self._by_key[key]

        return self._pool.submit(run), token

    async def run(
        self, fn: Callable[[CancelToken], Any], *, key: Any = None, label: str = "job"
    ) -> Any:
        """Submit and await; if the awaiting task is cancelled, the job is cancelled too."""
        fut, token = self.submit(fn, key=key, label=label)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            token.cancel("request cancelled")
            raise

    def cancel_matching(self, pred: Callable[[Any], bool], reason: str) -> int:
        """Cancel every queued or running keyed job whose key satisfies `pred`."""
        with self._lock:
            hits = [t for k, t in self._by_key.items() if pred(k)]
        for t in hits:
            t.cancel(reason)
        return len(hits)

    def shutdown(self) -> None:
        with self._lock:
            tokens = list(self._by_key.values())
        for t in tokens:
            t.cancel("shutdown")
        self._pool.shutdown(wait=False, cancel_futures=True)
