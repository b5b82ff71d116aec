"""Queue naming: every model has its own queue, ``embed.<model>``."""

from __future__ import annotations

import re
from typing import Any

#: Name of the chunk task, as it travels on the wire.
EMBED_TASK = "embedfleet.embed_chunk"
#: Prefix of per-model queues.
QUEUE_PREFIX = "embed."
#: What a model name may contain: it becomes part of a queue name and a Redis key.
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def queue_for(model: str) -> str:
    """Return the queue that carries chunks for ``model``."""
    return f"{QUEUE_PREFIX}{model}"


def route_task(
    name: str, args: Any, kwargs: dict[str, Any], options: dict[str, Any], **_: Any
) -> dict[str, str] | None:
    """Celery router: send chunk tasks to the queue of their model."""
    if name != EMBED_TASK:
        return None
    model = kwargs.get("model") if kwargs else None
    if model is None and args and len(args) > 2:
        model = args[2]
    return {"queue": queue_for(str(model))} if model else None


#: Name of the dataset chunk task (a planned input range -> one parquet part).
DATASET_TASK = "embedfleet.embed_range"

#: Message header naming a dataset chunk's rows (``A-B``, inclusive), set by its sender
#: (``tasks.jobs.datasets.send``) so inspect and Flower show which rows a chunk holds.
ROWS_HEADER = "embedfleet_rows"

#: Message header holding the time (Unix seconds) a chunk was sent, set by both senders,
#: so the gateway's ``/metrics`` tells the age of the oldest chunk still waiting.
SENT_HEADER = "embedfleet_sent"
