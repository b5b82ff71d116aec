"""Where a worker may read dataset inputs and write parts: defence in depth under the
job key (``tasks.contract.signing``).

Never under ``/proc``, ``/sys`` or ``/dev`` (after resolving symlinks: a link to
``/proc/self/environ`` is refused too). When ``EMBEDFLEET_DATA_ROOTS`` is set
(comma-separated folders and ``s3://`` prefixes), only under one of them.
"""

from __future__ import annotations

import os

from tasks.contract.errors import PathRefused

#: Folders a worker never reads or writes, whatever a job says.
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")


def parse(value: str) -> tuple[str, ...]:
    """``EMBEDFLEET_DATA_ROOTS`` as a tuple: local folders made absolute and resolved,
    ``s3://`` prefixes as given; empty when unset."""
    roots = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("s3://"):
            roots.append(item)
        else:
            roots.append(os.path.realpath(os.path.expanduser(item)))
    return tuple(roots)


def check(url: str, roots: tuple[str, ...], verb: str) -> None:
    """Raise :class:`PathRefused` unless a worker may ``verb`` (read, write) ``url``."""
    if url.startswith("s3://"):
        prefixes = [r for r in roots if r.startswith("s3://")]
        if roots and not any(url.startswith(p) for p in prefixes):
            raise PathRefused(_outside(verb, url, roots))
        return
    real = os.path.realpath(url)
    for folder in SYSTEM_FOLDERS:
        if _under(real, folder):
            raise PathRefused(
                f"refusing to {verb} {url}: it is under {folder} ({real}); workers never "
                "read or write system files"
            )
    local = [r for r in roots if not r.startswith("s3://")]
    if roots and not any(_under(real, root) for root in local):
        raise PathRefused(_outside(verb, url, roots))


def _under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder if folder == "/" else folder + "/")


def _outside(verb: str, url: str, roots: tuple[str, ...]) -> str:
    return f"refusing to {verb} {url}: outside EMBEDFLEET_DATA_ROOTS ({', '.join(roots)})"
