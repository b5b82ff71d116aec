"""What the CLI prints: human tables, ``--json`` shapes, and streamed .npy output."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def status_text(s: dict[str, Any]) -> str:
    from producers.progress import eta_text, when

    lines = [
        f"job      {s['id']} (list)",
        f"model    {s['model']} ({s.get('version', '')})",
        f"state    {s['state']}",
        f"rows     {s.get('rows_done', '?')}/{s.get('texts', '?')} done, ETA {eta_text(s)}",
        f"chunks   {s['done']}/{s['total']} done, {s['failed']} failed",
        f"created  {when(s.get('created'))}   started {when(s.get('started'))}   "
        f"finished {when(s.get('finished'))}",
    ]
    usage = s.get("usage")
    if usage:
        lines.append(f"tokens   {usage['tokens']} ({usage['truncated']} rows truncated)")
    for err in s["errors"]:
        lines.append(f"  chunk {err['chunk']}: {err['error']}")
    lines += waiting_text(s)
    return "\n".join(lines)


def dataset_status_text(s: dict[str, Any]) -> str:
    from producers.progress import eta_text, when

    lines = [
        f"job      {s['id']} (dataset)",
        f"model    {s['model']} ({s.get('version', '')})",
        f"state    {s['state']}",
        f"rows     {s['rows_done']}/{s['texts']} done, ETA {eta_text(s)}",
        f"chunks   {s['done']}/{s['total']} done, {s['failed']} failed",
        f"created  {when(s['created'])}   started {when(s.get('started'))}   "
        f"finished {when(s['finished'])}",
        f"input    {s['input']}",
        f"output   {s['output']}",
    ]
    if s.get("output_problem"):
        lines.append(
            f"  the output no longer verifies: {s['output_problem']} "
            f"(`embedfleet verify {s['output']}` checks every row)"
        )
    for err in s["errors"]:
        rows = f" rows {err['rows'][0]}-{err['rows'][1]}" if "rows" in err else ""
        lines.append(f"  chunk {err['chunk']}{rows}: {err['error']}")
    lines += waiting_text(s)
    return "\n".join(lines)


def waiting_text(s: dict[str, Any]) -> list[str]:
    """The status line for chunks held by a worker whose heartbeat lapsed."""
    waiting = s.get("waiting_on_dead_worker") or []
    if not waiting:
        return []
    shown = ", ".join(map(str, waiting[:10])) + (", ..." if len(waiting) > 10 else "")
    return [
        f"  {len(waiting)} chunk(s) wait on a dead worker ({shown}): a live worker puts them "
        f"back on the queue within seconds; `embedfleet retry {s['id']}` does it now"
    ]


def jobs_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no jobs"
    out = [f"{'JOB':34} {'KIND':8} {'MODEL':24} {'STATE':10} {'CHUNKS':>12} {'ROWS':>17}"]
    for r in rows:
        chunks = f"{r['done']}/{r['total']}"
        done = f"{r.get('rows_done', '?')}/{r['texts']}"
        kind = r.get("kind", "list")
        out.append(f"{r['id']:34} {kind:8} {r['model']:24} {r['state']:10} {chunks:>12} {done:>17}")
    return "\n".join(out)


def reload_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no worker answered the reload broadcast"
    out = [f"{'WORKER':36} {'OK':4} {'CONFIG':16} CHANGES"]
    for r in rows:
        changes = " ".join(
            f"{sign}{name}"
            for sign, key in (("+", "added"), ("-", "removed"), ("~", "changed"))
            for name in r.get(key) or []
        )
        detail = r.get("error") or changes or "no change"
        out.append(
            f"{r['worker']:36} {'yes' if r['ok'] else 'NO':4} {r['config_hash']:16} {detail}"
        )
    return "\n".join(out)


def models_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The contract's shape, ``[{"worker", "models": [{"name", "loaded", "ram_gb_config",
    "ram_gb_measured", "hits", ...}]}]``, plus each worker's config hash, budget and RSS."""
    return [
        {
            "worker": r["worker"],
            "config_hash": r.get("config_hash"),
            "budget_gb": r.get("budget_gb"),
            "rss_gb": r.get("rss_gb"),
            "models": r.get("models", []),
        }
        for r in rows
    ]


def models_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no worker answered"
    out = []
    for r in rows:
        out.append(
            f"{r['worker']}  config {r.get('config_hash')}  rss {r.get('rss_gb')} GB  "
            f"budget {r.get('budget_gb')} GB"
        )
        out.append(
            f"  {'MODEL':28} {'LOADED':7} {'RAM CFG':>8} {'RAM MEAS':>9} {'MEASURED BY':12} "
            f"{'HITS':>6} LAST USE"
        )
        for m in r.get("models", []):
            measured = _measured(m)
            last = (
                "-"
                if not m.get("last_used")
                else time.strftime("%H:%M:%S", time.localtime(m["last_used"]))
            )
            out.append(
                f"  {m['name']:28} {'yes' if m['loaded'] else 'no':7} {m['ram_gb_config']:>8.2f} "
                f"{measured:>9} {m.get('ram_method') or '-':12} {m['hits']:>6} {last}"
            )
    return "\n".join(out)


def _measured(m: dict[str, Any]) -> str:
    """The RAM MEAS cell: GB measured, ``remote``, or ``-`` when not loaded."""
    if m.get("ram_method") == "remote":
        return "remote"
    return "-" if m["ram_gb_measured"] is None else f"{m['ram_gb_measured']:.3f}"


def write_job(
    job: Any,
    path: Path,
    timeout: float | None = None,
    progress: bool = True,
    allow_failed: bool = False,
    ids: list[str | None] | None = None,
) -> str:
    """Wait for a job and write its embeddings in input order (``ids``: an ``id``
    column / field for .parquet and .jsonl); returns the line saying what was written.

    A .npy output is a memory map filled as chunks arrive, so a big job never sits in
    memory; other formats are written once the job is gathered. A ``long_text=windows``
    job writes a row per window (``producers.writers``: the row index beside a .npy);
    a plain job's .npy removes the row index an earlier windows job left beside it, and
    the line says so.
    """
    from producers.writers import (
        drop_stale_rows,
        rows_path,
        stale_rows_note,
        write_embeddings,
        write_rows,
    )

    if path.suffix.lower() != ".npy":
        vectors = job.wait(timeout=timeout, progress=progress, allow_failed=allow_failed)
        columns = getattr(job, "columns", None)
        if ids is not None and columns and "row" in columns:  # windows: an id per window
            ids = [ids[r] for r in columns["row"]]
        write_embeddings(path, vectors, ids, columns)
        return _wrote(job, path, len(vectors))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")

    def allocate(n: int, dim: int) -> np.ndarray:
        return np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))

    try:
        out = job.wait(
            timeout=timeout, progress=progress, allocate=allocate, allow_failed=allow_failed
        )
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed job leaves no half-written output behind
        raise
    count = len(out)
    rows = (getattr(job, "columns", None) or {}).get("row")
    removed = drop_stale_rows(path) if rows is None else None  # before the vectors land
    if isinstance(out, np.memmap):
        out.flush()
        del out
        tmp.replace(path)
    else:  # nothing succeeded: nothing was mapped
        np.save(path, out)
    if rows is not None:
        write_rows(path, rows)
        return _wrote(job, path, count) + f" (input row of each in {rows_path(path)})"
    return _wrote(job, path, count) + stale_rows_note(removed)


def _wrote(job: Any, path: Path, count: int) -> str:
    """``wrote N rows to PATH``; under ``long_text=windows``, ``M windows of N rows``."""
    n = job.record.n
    if "row" in (getattr(job, "columns", None) or {}):
        return f"wrote {count} windows of {n} rows to {path}"
    return f"wrote {n} rows to {path}"
