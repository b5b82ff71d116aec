"""Check a dataset job's output folder against its manifest (``embedfleet verify DEST/``).

Reads only the folder (no Redis): the manifest, every part's bytes and its ``row``
column. Four checks, one line each: the manifest names a job; every row ``0..n-1`` is
there exactly once across every ``.parquet`` file a reader of the folder would load;
every part's sha256 and size match the manifest; nothing else lies in the folder.
:func:`quick_check` is the cheap form ``status`` uses: the manifest and a listing, no
part read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tasks.io import manifest, parts

#: Names shown of a long list (missing rows, stray files, bad parts).
SHOWN = 5


@dataclass(frozen=True)
class Check:
    """One line of a report: ``name`` passed or not, and what was found."""

    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    """What ``verify`` found: ``ok`` when every check passed."""

    dest: str
    job: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def __bool__(self) -> bool:  # ``if client.verify(dest):`` reads as it says
        return self.ok

    def lines(self) -> list[str]:
        return [f"{c.name:<9} {'ok' if c.ok else 'FAIL'}: {c.detail}" for c in self.checks]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "job": self.job,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def _few(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _read_manifest(dest: str, found: dict[str, int], report: VerifyReport) -> Any:
    if parts.MANIFEST not in found:
        detail = f"{dest}{parts.MANIFEST} is missing: no job finished writing here"
        report.checks.append(Check("manifest", False, detail))
        return None
    try:
        parsed = manifest.parse(parts.read(dest, parts.MANIFEST))
    except manifest.ManifestError as exc:
        report.checks.append(Check("manifest", False, f"{dest}{parts.MANIFEST}: {exc}"))
        return None
    report.job = parsed.job
    detail = f"job {parsed.job}, {len(parsed.parts)} parts, {parsed.rows} rows"
    report.checks.append(Check("manifest", True, detail))
    return parsed


def verify(dest: str) -> VerifyReport:
    """Check the folder or S3 prefix ``dest`` against its ``_manifest.json``."""
    dest = parts.normalize(dest)
    report = VerifyReport(dest)
    found = parts.listing(dest)
    parsed = _read_manifest(dest, found, report)
    if parsed is None:
        return report
    listed = {p.name: p for p in parsed.parts}
    bad: list[str] = []
    counts = np.zeros(parsed.rows, dtype=np.int64)
    outside: list[str] = []
    unreadable: list[str] = []
    for name in sorted(n for n in found if n.endswith(".parquet")):
        data = parts.read(dest, name)
        entry = listed.get(name)
        if entry is not None and (len(data) != entry.bytes or parts.sha256(data) != entry.sha256):
            bad.append(f"{name} differs from the manifest")
        try:
            import pyarrow.parquet as pq

            # one thread: pyarrow's pool aborted the CLI at exit ("terminate called without
            # an active exception", rc -6) after a verify, as it did after openai_output
            table = pq.read_table(io.BytesIO(data), columns=["row"], use_threads=False)
            rows = table.column("row").to_numpy()
        except Exception as exc:  # pyarrow's errors: not parquet, no row column
            unreadable.append(f"{name} ({type(exc).__name__})")
            continue
        inside = (rows >= 0) & (rows < parsed.rows)
        if not inside.all():
            outside.append(name)
        np.add.at(counts, rows[inside], 1)
    bad = [f"{n} is missing" for n in sorted(set(listed) - set(found))] + bad
    windows = (parsed.body.get("options") or {}).get("long_text") == "windows"
    report.checks.append(_rows_check(counts, outside, unreadable, windows))
    ok_parts = len(listed) - len(bad)
    detail = f"{ok_parts} of {len(listed)} parts match" + (f": {_few(bad)}" if bad else "")
    report.checks.append(Check("checksums", not bad, detail))
    strays = sorted(n for n in found if n not in listed and n != parts.MANIFEST)
    detail = f"{len(strays)} stray: {_few(strays)}" if strays else f"nothing else in {dest}"
    report.checks.append(Check("folder", not strays, detail))
    return report


def _rows_check(
    counts: np.ndarray, outside: list[str], unreadable: list[str], windows: bool = False
) -> Check:
    """Each row once (``long_text=windows``: once or more, a part row per window)."""
    n = counts.size
    missing = np.flatnonzero(counts == 0)
    twice = np.flatnonzero(counts > 1) if not windows else np.zeros(0, dtype=np.int64)
    problems = []
    if missing.size:
        problems.append(f"{missing.size} of {n} rows missing (first: {int(missing[0])})")
    if twice.size:
        problems.append(f"{twice.size} rows more than once (first: {int(twice[0])})")
    if outside:
        problems.append(f"rows outside 0..{n - 1} in {_few(outside)}")
    if unreadable:
        problems.append(f"unreadable: {_few(unreadable)}")
    if problems:
        return Check("rows", False, "; ".join(problems))
    if windows:
        return Check("rows", True, f"each of rows 0..{n - 1} in one window or more")
    return Check("rows", True, f"each of rows 0..{n - 1} exactly once")


def quick_check(dest: str, job_id: str) -> str | None:
    """What is wrong with job ``job_id``'s finished output at ``dest`` as far as the
    manifest and a listing tell (no part is read), or None."""
    found = parts.listing(dest)
    if parts.MANIFEST not in found:
        return f"{dest}{parts.MANIFEST} is missing"
    try:
        parsed = manifest.parse(parts.read(dest, parts.MANIFEST))
    except manifest.ManifestError as exc:
        return f"{dest}{parts.MANIFEST}: {exc}"
    if parsed.job != job_id:
        return f"{dest}{parts.MANIFEST} names job {parsed.job}, not this job"
    problems = [f"{p.name} is missing" for p in parsed.parts if p.name not in found]
    problems += [
        f"{p.name} is {found[p.name]} bytes, not {p.bytes}"
        for p in parsed.parts
        if p.name in found and found[p.name] != p.bytes
    ]
    listed = {p.name for p in parsed.parts}
    problems += [
        f"{n} is not the job's" for n in sorted(found) if n not in listed | {parts.MANIFEST}
    ]
    return "; ".join(problems[:SHOWN]) + (" ..." if len(problems) > SHOWN else "") or None
