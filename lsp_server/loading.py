"""Settings and the model of a server: the load in the worker, its report, the cache store.

`ModelHost` is the part of `DiffusionLanguageServer` that owns the `Service` (engine and
per-document cache store): a settings change that names another model or device reloads
it; a change of the cache settings makes a new store; sampler settings reach each job
through `sampler()` (the engine is never rebuilt for them).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from lsprotocol import types as t

from diffusion_core.config import SamplerConfig
from diffusion_core.errors import ModelLoadError
from lsp_server.service import Service
from lsp_server.settings import SECTION, Settings, parse_settings

if TYPE_CHECKING:  # the engine imports torch, which the loader thread imports
    from diffusion_core.engine import Engine

log = logging.getLogger("lsp_server")

CACHE_SETTINGS = ("cache_budget_mb", "cache_dir", "cache_dir_max_mb", "cache_dir_max_age_days")


class ModelHost:
    """Mixed into the language server (which provides `worker`, `show`, `log_line`,
    `window_show_message`, `work_done_progress` and `session`)."""

    def _init_model_host(self, base_settings: Settings | None) -> None:
        self.settings = base_settings or Settings()
        self.service: Service | None = None
        self.load_error: str | None = None
        self._pending_messages: list[tuple[t.MessageType, str]] = []
        self._loading: asyncio.Future | None = None
        self._load_done: asyncio.Future | None = None
        self._initialized = False
        self._load_pending = False
        self._progress_n = 0
        self._load_gen = 0  # the latest model load; older ones may not set the service
        self._model_lock = threading.Lock()

    @property
    def engine(self) -> Engine | None:
        svc = self.service
        return None if svc is None else svc.engine

    @property
    def store(self):
        svc = self.service
        return None if svc is None else svc.store

    # -- settings -------------------------------------------------------------------
    def apply_settings(self, data: Any) -> tuple[bool, list[str]]:
        """Merge new settings; returns (model must be reloaded, problems)."""
        new, problems = parse_settings(data, self.settings)
        old, self.settings = self.settings, new
        reload = (new.model_path, new.device, new.quantize) != (old.model_path, old.device, old.quantize)
        cache_changed = any(getattr(new, k) != getattr(old, k) for k in CACHE_SETTINGS)
        svc = self.service
        if not reload and svc is not None and cache_changed:
            self.service = Service(svc.engine, self._make_store(svc.engine))
        logging.getLogger("lsp_server").setLevel(new.log_level.upper())
        return reload, problems

    def sampler(self, engine: Engine | None = None) -> SamplerConfig:
        """The sampler of the current settings, on top of the engine's own (per job)."""
        s = self.settings
        base = engine.sampler if engine is not None else SamplerConfig()
        # blockSize 0 (the default): the model's trained block size (Engine.default_block_size)
        return base.replace(block_size=s.block_size or base.block_size, threshold=s.threshold,
                            max_tokens=s.max_tokens, budget_ms=s.latency_budget_ms,
                            min_prob=s.min_probability,
                            heal=s.token_healing)

    def _make_store(self, engine: Engine):
        """A fresh cache store; may run in the worker, so problems are queued, not shown."""
        from dlsp_cache import DocumentCacheStore

        s = self.settings
        budget = int(s.cache_budget_mb * 2**20)
        # a spill file of another precision is rejected, not fed to the model
        param = next(engine.model.parameters())
        dtype, device = param.dtype, param.device  # restored spills go where the model is
        try:
            store = DocumentCacheStore(
                model_hash=engine.model_hash, budget_bytes=budget, spill_dir=s.cache_dir,
                dtype=dtype, device=device, spill_max_bytes=int(s.cache_dir_max_mb * 2**20),
                spill_max_age_s=s.cache_dir_max_age_days * 86400)
            self._pending_messages.extend((t.MessageType.Warning, w) for w in store.warnings)
            return store
        except (OSError, ValueError) as e:
            self._pending_messages.append((t.MessageType.Warning, (
                f"cache directory {s.cache_dir!r} is unusable ({e}); caching in memory only")))
            return DocumentCacheStore(model_hash=engine.model_hash, budget_bytes=budget,
                                      dtype=dtype, device=device)

    def flush_messages(self) -> None:
        for kind, msg in self._pending_messages:
            self.window_show_message(t.ShowMessageParams(type=kind, message=f"diffusion-lsp: {msg}"))
        self._pending_messages.clear()

    # -- the load -------------------------------------------------------------------
    def _load_job(self, gen: int, path: str | None, device: str, quantize: str = "none"
                  ) -> tuple[str | None, float] | None:
        """Runs in the worker, so jobs queued behind it already see the new service.

        Only the latest load (`gen`) may set the service or `load_error`: switching to a
        good model and then to a broken one left the good one serving under the broken
        one's name (and its error); the other order left a stale error. A superseded
        load returns None (and is skipped if it has not started)."""
        import torch  # first import here, in the worker: `initialize` never waits for it

        from diffusion_core.engine import Engine

        if gen != self._load_gen:
            return None
        note = None
        if device.startswith("cuda") and not torch.cuda.is_available():
            note = f"device {device!r} is not available here; using cpu"
            device = "cpu"
        t0 = time.perf_counter()
        try:
            engine = Engine.from_path(path, device=device, sampler=self.sampler(), quantize=quantize)
        except Exception as e:
            with self._model_lock:
                if gen != self._load_gen:
                    return None
                self.load_error = str(e) if isinstance(e, ModelLoadError) else f"{type(e).__name__}: {e}"
            raise
        service = Service(engine, self._make_store(engine))
        with self._model_lock:
            if gen != self._load_gen:
                return None
            self.service, self.load_error = service, None
        return note, (time.perf_counter() - t0) * 1000

    def start_load(self) -> asyncio.Future:
        """Queue the model load in the worker (first in line) and report its outcome."""
        s = self.settings
        with self._model_lock:
            self._load_gen += 1
            gen = self._load_gen
            self.service, self.load_error = None, None
        self._load_pending = False
        fut, _ = self.worker.submit(lambda _tok: self._load_job(gen, s.model_path, s.device, s.quantize),
                                    label="load model")
        self._loading = asyncio.wrap_future(fut)
        self._load_done = asyncio.ensure_future(self._finish_load(self._loading, s))
        return self._load_done

    async def _finish_load(self, loading: asyncio.Future, s: Settings) -> str:
        try:
            outcome = await loading
            if outcome is None:  # a newer load replaced this one
                return "model replaced"
            note, ms = outcome
        except ModelLoadError as e:
            self.show("error", f"diffusion-lsp: cannot load the model: {e}. Completion and repair "
                      f"are off until {SECTION}.modelPath points to a valid model directory.")
            return "model failed to load"
        except Exception:  # e.g. CUDA errors: one clear message, not a traceback per request
            log.exception("model load failed")
            self.show("error", f"diffusion-lsp: cannot load the model: {self.load_error}")
            return "model failed to load"
        finally:
            if self._loading is loading:
                self._loading = None
        if note:
            self.show("warning", f"diffusion-lsp: {note}")
        if self._initialized:
            self.flush_messages()
        e = self.engine
        if e is None:
            return "model replaced"
        p = sum(x.numel() for x in e.model.parameters())
        self.log_line("info", f"loaded {e.loaded.path} (hash {e.model_hash}, {p} parameters, "
                      f"device {s.device}) in {ms:.0f} ms")
        return f"model ready ({p / 1e6:.2f}M parameters, {ms:.0f} ms)"

    async def report_load(self, done: asyncio.Future) -> None:
        """Work-done progress around a running load, if the client offers it."""
        token = None
        if self.session.work_done_progress:
            self._progress_n += 1
            token = f"diffusion-lsp/load-model/{self._progress_n}"
            where = self.settings.model_path or "the embedded default model"
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(token, t.WorkDoneProgressBegin(
                    title="diffusion-lsp", message=f"loading {where}", cancellable=False))
            except Exception as e:  # the client refused a progress token: go on without
                log.debug("no work-done progress: %s", e)
                token = None
        message = await asyncio.shield(done)
        if token is not None:
            self.work_done_progress.end(token, t.WorkDoneProgressEnd(message=message))

    def model_unavailable(self) -> bool:
        """No model, and none on the way (a request queued behind a load just waits)."""
        if self.service is not None:
            return False
        return self.load_error is not None or (self._loading is None and not self._load_pending)
