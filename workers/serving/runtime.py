"""A worker's runtime: its config, its model cache, and the encode path.

One :class:`Runtime` per worker process (``workers.serving.process`` holds it), built at
boot (``workers.serving.boot``). The chunk task encodes through :meth:`Runtime.embed`;
remote-control commands (reload) and the watchdog reach the same runtime, since the
threads pool keeps them in one process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from tasks.contract.chunking import estimate_tokens
from tasks.contract.logs import event_logger
from tasks.contract.options import EmbedOptions
from tasks.contract.settings import Settings
from tasks.contract.spec import ModelConfig, spec_version
from workers.errors import UnknownModelError
from workers.memory.model_cache import ModelCache
from workers.memory.readings import memory_budget_gb
from workers.models.base import BaseEmbeddingModel, generate_embeddings
from workers.models.prompts import prompt_text
from workers.observability.encode_cost import EncodeCosts
from workers.observability.events import Events, TextsEncoded
from workers.observability.process_events import process_events
from workers.reuse.store import EmbeddingCache, embed_with_cache, reuse_key
from workers.serving.long_text import MeanOfWindows, WindowRows
from workers.serving.reload import ConfigChange, log_reload, plan_reload
from workers.serving.selection import served_models
from workers.serving.shaping import shape_vectors
from workers.serving.versions import VersionBook, unload_idle_old_versions

log = event_logger(__name__)


class Runtime:
    """Config + cache of one worker process, set up from the worker's ``settings``."""

    def __init__(
        self,
        config: ModelConfig,
        settings: Settings,
        budget_gb: float | None = None,
        events: Events | None = None,
        client: Any = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self._client = client
        #: This worker's events (default: the process's hub, where plugins subscribe): the
        #: boot hands the same object to every emitter and subscriber (watchdog, chunk
        #: signals, metrics).
        self.events = events if events is not None else process_events()
        self.cache = ModelCache(
            config.models,
            budget_gb if budget_gb is not None else memory_budget_gb(settings.memory_limit_gb),
            policy=settings.eviction_policy,
            events=self.events,
        )
        self._reload_lock = threading.Lock()
        self._sweeper: threading.Thread | None = None
        self._closing = threading.Event()  # set by close(): background threads end
        self.versions = VersionBook(config)
        #: Seconds per text each model took here, published for the producers' chunk sizes.
        self.encode_costs = EncodeCosts()
        self.embedding_cache: EmbeddingCache | None = None
        #: int8/uint8 ranges by (model, version, dims) (``quant_ranges``).
        self._quant_ranges: dict[tuple[str, str, int], np.ndarray] = {}
        if settings.embed_cache:
            self.embedding_cache = EmbeddingCache(
                self.client,
                ttl_s=settings.embed_cache_ttl_s,
                max_bytes=(
                    None
                    if settings.embed_cache_max_mb is None
                    else int(settings.embed_cache_max_mb * 1024 * 1024)
                ),
            )
        log.info(
            "event=runtime_ready source=%s config_hash=%s models=%s budget_gb=%.2f",
            config.source,
            config.config_hash,
            ",".join(config) or "-",
            self.cache.budget_gb,
        )

    @property
    def client(self) -> Any:
        """The Redis client of the embedding cache and the fleet's quantization ranges:
        the one the boot handed in (its app's), else the default app's."""
        if self._client is None:
            from tasks.app import app

            self._client = app.backend.client
        return self._client

    def embed(
        self, model: str, texts: list[str], options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, str, dict[str, np.ndarray]]:
        """Encode ``texts`` with ``model``; returns (vectors, version used, columns):
        ``columns`` holds per output row ``tokens`` (int32, what the model saw, prompt
        and special tokens included) and ``truncated`` (bool).

        ``options["version"]`` pins the model version the job resolved at submit time: a
        worker serving another version loads the pinned one if it still can (a version
        it served before a reload, or one its config source holds now), else the chunk
        fails with :class:`ModelChangedError`; versions are never mixed in a job.
        ``options["cache"]`` (default true) uses the fleet-wide embedding cache. The
        job's embedding options (``tasks.contract.options``) shape the vectors after it.
        """
        options = options or {}
        embed_options = EmbedOptions.from_wire(options)
        if model not in self.config:
            reason = self.config.errors.get(model)
            if reason:
                raise UnknownModelError(f"model {model!r} has an invalid config entry: {reason}")
            known = ", ".join(sorted(self.config)) or "none"
            raise UnknownModelError(f"model {model!r} is not configured; known: {known}")
        key = self._pinned_key(model, options.get("version"))
        with self.cache.lease(key) as loaded:
            version = spec_version(loaded.spec)

            prompt = prompt_text(embed_options, model, loaded.prompts, loaded.default_prompt_name)

            def encode(batch: list[str]) -> np.ndarray:
                started = time.perf_counter()
                vectors = generate_embeddings(loaded, batch, prompt)
                self.encode_costs.record(
                    model,
                    len(batch),
                    time.perf_counter() - started,
                    tokens=int(estimate_tokens(batch).sum()),
                    dimension=int(vectors.shape[1]) if vectors.ndim == 2 else None,
                )
                return vectors

            windowing = ""
            if embed_options.long_text == "windows":  # a row per window
                cut = WindowRows(loaded, texts, prompt, embed_options.overlap)
                texts = cut.texts
            if embed_options.long_text == "mean":  # workers.serving.long_text
                mean = MeanOfWindows(loaded, texts, prompt, embed_options.overlap)
                encode, windowing = mean.encoder(encode), f"mean{embed_options.overlap}"
            if options.get("cache", True) and self.embedding_cache is not None:
                vectors = embed_with_cache(
                    self.embedding_cache,
                    model,
                    reuse_key(reuse_version(loaded, version), prompt, windowing),
                    texts,
                    encode,
                )
            else:
                vectors = encode(texts)
            self.cache.events.emit(TextsEncoded(model=model, texts=tuple(texts)))
            if embed_options.long_text == "windows":
                columns = cut.columns()
            elif windowing:
                columns = mean.columns(texts)
            else:
                tokens, truncated = loaded.token_counts(texts, prompt)
                columns = {"tokens": tokens, "truncated": truncated}
            shaped = shape_vectors(
                vectors,
                embed_options,
                loaded,
                lambda dims: self.quant_ranges(model, version, loaded, dims),
            )
            return shaped, version, columns

    def quant_ranges_report(self) -> dict[str, dict[str, Any]]:
        """Per model, the int8/uint8 ranges in use here, by dimensions (``models --json``)."""
        out: dict[str, dict[str, Any]] = {}
        for (model, version, dims), ranges in list(self._quant_ranges.items()):
            out.setdefault(model, {})[str(dims)] = {"version": version, "ranges": ranges.tolist()}
        return out

    def quant_ranges(
        self, model: str, version: str, loaded: BaseEmbeddingModel, dims: int
    ) -> np.ndarray:
        """int8/uint8 ranges of ``model`` at ``version`` and ``dims`` dimensions: the
        fleet's stored copy, else computed here from the shipped calibration set and
        stored (``tasks.jobs.quant_ranges``)."""
        from tasks.contract.vectors import calibration_ranges, truncate_dimensions
        from tasks.jobs import quant_ranges

        key = (model, version, dims)
        if key in self._quant_ranges:
            return self._quant_ranges[key]
        client = self.client
        ranges = quant_ranges.load(client, model, version, dims)
        if ranges is None:
            calibration = generate_embeddings(loaded, list(quant_ranges.calibration_texts()))
            cut = truncate_dimensions(calibration, dims, loaded.normalizes)
            ranges = quant_ranges.store(client, model, version, calibration_ranges(cut))
            log.info("event=quant_ranges_computed model=%s version=%s dims=%d", *key)
        self._quant_ranges[key] = ranges
        return ranges

    def _pinned_key(self, model: str, version: Any) -> str:
        """The cache key of ``model`` at the job's pinned ``version`` (``VersionBook``);
        an old version's spec joins the cache's specs when first asked for."""
        key, spec = self.versions.pinned(model, version, self.config[model])
        if key not in self.cache.specs:
            self.cache.specs = {**self.cache.specs, key: spec}
        return key

    # -- serving selection ------------------------------------------------------------
    def served_models(self, config: ModelConfig | None = None) -> list[str]:
        """Models this worker consumes under ``config``: all, or the selected ones."""
        config = config or self.config
        return served_models(config, self.settings.worker_models)

    # -- reload ----------------------------------------------------------------------
    def reload(self, allow_empty: bool = False) -> tuple[ConfigChange, ModelConfig]:
        """Re-read the config source and apply the difference (``workers.serving.reload``
        checks it, all or nothing); returns ``(change, old config)``. Removed models are
        unloaded once their leases end; for a changed model, running tasks finish on the
        old instance and new tasks load the new one."""
        with self._reload_lock:
            old = self.config
            change, new = plan_reload(old, allow_empty=allow_empty)
            self.versions.retire(old, change.changed + change.removed)
            self.config = new
            self.cache.specs = self.versions.specs(new)
            for name in change.removed:
                self.cache.unload(name, reason="removed by reload")
                self.encode_costs.forget(name)
            for name in change.changed:
                self.cache.unload(name, reason="changed by reload")
                self.encode_costs.forget(name)
            log_reload(change, new, old)
        if change.changed or change.removed:
            self._start_old_version_sweeper()
        return change, old

    def _start_old_version_sweeper(self) -> None:
        """Once a reload retired a version: let its loaded copies go when their jobs end."""
        with self._reload_lock:
            if self._sweeper is not None:
                return
            idle_s = self.settings.old_version_idle_s
            self._sweeper = threading.Thread(
                target=self._sweep_old_versions,
                args=(idle_s,),
                name="embedfleet-old-versions",
                daemon=True,
            )
        self._sweeper.start()

    def _sweep_old_versions(self, idle_s: float) -> None:
        while not self._closing.wait(min(5.0, idle_s / 2)):
            self.sweep_old_versions_once(idle_s)

    def sweep_old_versions_once(self, idle_s: float) -> list[str]:
        """One pass of the old-version sweeper: unload idle ``name@version`` copies."""
        try:
            return unload_idle_old_versions(self.cache, idle_s)
        except Exception as exc:  # never let the sweeper die on one bad unload
            log.error("event=old_version_sweep_failed error=%r", str(exc))
            return []

    def close(self, timeout: float = 5.0) -> None:
        """Stop this runtime's background threads (the old-version sweeper)."""
        self._closing.set()
        sweeper = self._sweeper
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join(timeout)

    def preload(self, names: list[str] | None = None) -> None:
        """Load the served models marked ``preload: true`` (or just ``names``)."""
        served = set(self.served_models())
        for name, spec in list(self.config.items()):
            if name not in served or not spec.preload or (names is not None and name not in names):
                continue
            try:
                self.cache.load(name)
            except Exception as exc:  # a bad model must not stop the worker
                log.error("event=preload_failed model=%s error=%r", name, str(exc))


def reuse_version(model: BaseEmbeddingModel, version: str) -> str:
    """The version the embedding cache keys ``model``'s vectors under: its version, plus
    the precision it runs in when that is not fp32. A fleet mixing bf16 and fp32 workers
    then never hands out one's vectors for the other's (they agree to ~1e-5 in cosine,
    but a hit must be bit-identical to what this worker would compute)."""
    record = model.precision_record
    if record is None or record.precision == "fp32":
        return version
    return f"{version}+{record.precision}"
