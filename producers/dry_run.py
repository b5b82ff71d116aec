"""Dry runs: what a submit would queue and how long the fleet would take, queuing nothing.

``submit(..., dry_run=True)`` / ``submit --dry-run`` plans the job exactly as the submit
would (the same chunks) and estimates:

- tokens: the UTF-8 byte estimate of ``tasks.contract.chunking.estimate_tokens`` (the one
  producers and workers both count with; producers load no tokenizer), over every text
  of a list job, over a sample of chunks of a dataset job. Under ``long_text=windows|mean``
  every window is encoded: ``estimate_windows`` cuts each text's estimated word pieces
  by the workers' window rule (the model's ``max_seq_length`` when its entry publishes
  one, else 256; overlapping windows repeat ``window_overlap`` tokens), and the plan's
  note says the count is an estimate from bytes;
- output rows: one a row, or under ``long_text=windows`` one a window;
- duration: the tokens x the seconds one estimated token cost a worker thread, as the
  fleet's workers measured and published it (``tasks.contract.catalog``), plus the
  fleet's own cost per chunk (``tasks.io.plan.CHUNK_OVERHEAD_S``), spread over the live
  worker threads serving the model (at most one chunk each at a time). No worker has
  measured the model yet: no duration, and the plan says so;
- output: rows x the bytes of one vector as the job's options shape it (``dimensions``:
  the first N; ``quantize``: 1 byte a dimension for int8/uint8, 1 bit for binary/ubinary;
  else float32), plus the row column of parts (and of a windows job's list output).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.contract import catalog
from tasks.contract.chunking import DEFAULT_WINDOW, estimate_tokens, estimate_windows, utf8_lengths
from tasks.contract.options import EmbedOptions
from tasks.io.plan import CHUNK_OVERHEAD_S
from tasks.jobs.redis_retry import retry_while_unreachable

if TYPE_CHECKING:
    from producers.job import JobClient
    from tasks.io.scan import Plan

#: Chunks of a dataset job read to estimate its tokens (first, middle, last).
SAMPLE_CHUNKS = 3


@dataclass(frozen=True)
class DryRun:
    """A job as it would be queued, and what it would cost; nothing was queued."""

    kind: str  # "list" or "dataset"
    model: str
    version: str
    rows: int
    chunks: int
    bytes: int  # UTF-8 bytes of the texts (list), bytes of the input files (dataset)
    tokens: int  # estimated
    tokens_from: str
    threads: int  # live worker threads serving the model now
    estimated_s: float | None
    output_bytes: int | None
    dimension: int | None
    chunk_rows: int | None = None
    output: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Rows the output would hold: ``rows``, or under ``long_text=windows`` one a window
    #: (estimated, as the tokens are); None: ``rows``.
    output_rows: int | None = None

    def __post_init__(self) -> None:
        if self.output_rows is None:
            object.__setattr__(self, "output_rows", self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": True, **asdict(self)}

    def dumps(self) -> str:
        return json.dumps(self.as_dict())

    def text(self) -> str:
        est = "unknown" if self.estimated_s is None else f"~{_duration(self.estimated_s)}"
        out = "unknown" if self.output_bytes is None else f"~{_size(self.output_bytes)}"
        per = f" of up to {self.chunk_rows} rows" if self.chunk_rows else ""
        lines = [
            f"dry run: nothing queued ({self.kind} job)",
            f"model    {self.model} ({self.version})",
            f"rows     {self.rows}"
            + (f" (~{self.output_rows} output rows: one a window)" if self.windows else ""),
            f"chunks   {self.chunks}{per}",
            f"input    {_size(self.bytes)}",
            f"tokens   ~{self.tokens} ({self.tokens_from})",
            f"workers  {self.threads} live worker thread(s) serve {self.model}",
            f"duration {est}",
            f"output   {out}" + (f" to {self.output}" if self.output else ""),
        ]
        return "\n".join(lines + [f"note     {n}" for n in self.notes])

    @property
    def windows(self) -> bool:
        """True when the output has a row per window, not per input row."""
        return self.output_rows != self.rows


def vector_bytes(dimension: int, options: EmbedOptions | None = None) -> int:
    """Bytes of one output vector of a model of ``dimension`` under ``options``."""
    if options is not None and options.dimensions:
        dimension = min(dimension, options.dimensions)
    quantize = options.quantize if options is not None else None
    if quantize in ("binary", "ubinary"):
        return math.ceil(dimension / 8)
    return dimension if quantize in ("int8", "uint8") else dimension * 4


def for_list(
    client: JobClient,
    model: str,
    version: str,
    texts: list[str],
    bounds: np.ndarray,
    options: EmbedOptions | None = None,
) -> DryRun:
    served = _served(client, model)
    lengths = utf8_lengths(texts)
    tokens, encoded, notes = _tokens(texts, lengths, served, options)
    rows = len(texts)
    windows = options is not None and options.long_text == "windows"
    return _estimate(
        client,
        served,
        "list",
        model,
        version,
        rows,
        int(bounds.size - 1),
        int(lengths.sum()),
        int(tokens.sum()),
        "UTF-8 bytes / 4, every text",
        bytes_per_row=8 if windows else 0,  # a windows job's row index (NAME.rows.npy)
        options=options,
        encoded=int(encoded.sum()),
        notes=notes,
    )


def for_dataset(
    client: JobClient,
    model: str,
    version: str,
    plan: Plan,
    output: str,
    options: EmbedOptions | None = None,
) -> DryRun:
    from tasks.io.ranges import read_chunk

    spec = {
        "format": plan.format,
        "text_field": plan.text_field,
        "id_field": plan.id_field,
        "openai_model": plan.openai_model,
    }
    total = int(plan.chunks.size)
    picks = sorted({0, total // 2, total - 1})[:SAMPLE_CHUNKS]
    sampled: list[str] = []
    for index in picks:
        chunk = plan.chunks[index]
        sampled += read_chunk(spec, plan.files[int(chunk["file"])], chunk).texts
    served = _served(client, model)
    tokens, encoded, notes = _tokens(sampled, utf8_lengths(sampled), served, options)
    per_row = float(tokens.mean()) if sampled else 0.0
    per_row_encoded = float(encoded.mean()) if sampled else 1.0
    chunk_rows = int(plan.chunks["rows"].max()) if total else 0
    return _estimate(
        client,
        served,
        "dataset",
        model,
        version,
        plan.rows,
        total,
        int(sum(int(f["size"]) for f in plan.files)),
        round(per_row * plan.rows),
        f"UTF-8 bytes / 4, a sample of {len(sampled)} rows",
        bytes_per_row=8,  # the int64 row column
        chunk_rows=chunk_rows,
        output=output,
        options=options,
        encoded=round(per_row_encoded * plan.rows),
        notes=notes,
    )


def _served(client: JobClient, model: str) -> catalog.FleetModel | None:
    """The model as the fleet publishes it (None: no worker has published it)."""
    redis = client.redis
    return retry_while_unreachable(lambda: catalog.read(redis)).models.get(model)


def _tokens(
    texts: list[str],
    lengths: np.ndarray,
    served: catalog.FleetModel | None,
    options: EmbedOptions | None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(tokens, encoded, notes)``: per text, the estimated tokens the model encodes and
    the texts it encodes (its windows under ``long_text=windows|mean``, else 1), and
    what the plan should say of the estimate."""
    if options is None or options.long_text is None:
        return estimate_tokens(texts, lengths=lengths), np.ones(len(texts), np.int64), []
    window = int((served.facts.get("max_seq_length") if served else None) or DEFAULT_WINDOW)
    windows, tokens = estimate_windows(texts, window, options.overlap, lengths)
    note = (
        f"long_text={options.long_text}: tokens and windows estimated from UTF-8 bytes "
        f"(4 a token; the producer has no tokenizer) in windows of {window} tokens "
        f"overlapping by {options.overlap}; the workers' tokenizer cuts the real ones"
    )
    return tokens, windows, [note]


def _estimate(
    client: JobClient,
    served: catalog.FleetModel | None,
    kind: str,
    model: str,
    version: str,
    rows: int,
    chunks: int,
    size: int,
    tokens: int,
    tokens_from: str,
    bytes_per_row: int,
    chunk_rows: int | None = None,
    output: str | None = None,
    options: EmbedOptions | None = None,
    encoded: int | None = None,
    notes: list[str] | None = None,
) -> DryRun:
    """``encoded``: the texts the model encodes (windows under ``long_text=windows|mean``;
    None: ``rows``)."""
    threads = retry_while_unreachable(lambda: catalog.live_threads(client.redis, model))
    notes = list(notes or [])
    encoded = rows if encoded is None else encoded
    output_rows = encoded if options is not None and options.long_text == "windows" else rows
    estimated = None
    per_token = served.seconds_per_token if served else None
    per_text = served.seconds_per_text if served else None
    if per_token is None and per_text is None:
        notes.append(f"no worker has measured {model} yet: run a small job first to estimate")
    else:
        work = tokens * per_token if per_token is not None else encoded * (per_text or 0.0)
        parallel = max(1, min(threads, chunks))
        estimated = round((work + chunks * CHUNK_OVERHEAD_S) / parallel, 2)
    if threads == 0:
        notes.append(f"no live worker serves {model} now: the job would wait for one")
    dimension = served.dimension if served and served.dimension else None
    if dimension is None:
        notes.append(f"the fleet has not published {model}'s dimension yet: output size unknown")
    per_out = None if dimension is None else vector_bytes(dimension, options) + bytes_per_row
    out = None if per_out is None else output_rows * per_out
    return DryRun(
        kind, model, version, rows, chunks, size, tokens, tokens_from, threads,
        estimated, out, dimension, chunk_rows, output, notes, output_rows,
    )  # fmt: skip


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = math.floor(seconds / 60)
    return f"{minutes} min {seconds - 60 * minutes:.0f} s"
