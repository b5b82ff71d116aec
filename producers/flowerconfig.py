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
    """Show a chunk's kwargs as ``model=M chunk=I texts=N job=ID``: the model first,
    since a table cell shows only the start of it. Other tasks are left alone."""
    if getattr(task, "name", None) != "embedfleet.embed_chunk" or not task.kwargs:
        return task
    fields = {k: v.strip("'") for k, v in _PAIR.findall(str(task.kwargs))}
    if "model" not in fields:
        return task
    texts = fields.get("texts", "").strip("<>").split(" ")[0]
    task.kwargs = (
        f"model={fields['model']} chunk={fields.get('index', '?')} "
        f"texts={texts or '?'} job={fields.get('job_id', '?')}"
    )
    return task
