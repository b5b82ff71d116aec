"""Flower settings for embedfleet: ``celery -A tasks flower --conf=producers/flowerconfig.py``.

Flower reads this file with tornado's ``parse_config_file``: every top-level name that
is a Flower option is applied. Command-line flags and ``FLOWER_*`` env vars still win.
"""

from __future__ import annotations

import re
from typing import Any

#: Columns of the task list. A chunk's uuid is ``<job id>.<chunk index>``.
tasks_columns = "uuid,state,kwargs,runtime,worker,received,name"

#: ``'key': value`` pairs of the chunk's kwargsrepr (producers.client sets it).
_PAIR = re.compile(r"'(\w+)': ('[^']*'|<[^>]*>|[^,}]+)")


def format_task(task: Any) -> Any:
    """Show a list chunk's kwargs as ``model=M chunk=I texts=N job=ID`` and a dataset
    chunk's as ``model=M rows=A-B chunk=I job=ID``: the model first, since a table cell
    shows only the start of it. Other tasks are left alone. (A list chunk's result is
    already a summary, ``<n x dim <f4>``: tasks.guards.request.summarize_result.)"""
    name = getattr(task, "name", None)
    if name not in {"embedfleet.embed_chunk", "embedfleet.embed_range"} or not task.kwargs:
        return task
    fields = {k: v.strip("'") for k, v in _PAIR.findall(str(task.kwargs))}
    if "model" not in fields:
        return task
    chunk, job = fields.get("index", "?"), fields.get("job_id", "?")
    if name == "embedfleet.embed_range":
        task.kwargs = (
            f"model={fields['model']} rows={fields.get('rows', '?')} chunk={chunk} job={job}"
        )
        return task
    texts = fields.get("texts", "").strip("<>").split(" ")[0]
    task.kwargs = f"model={fields['model']} chunk={chunk} texts={texts or '?'} job={job}"
    return task
