"""The chunk task's worker-side request: every body and header shape a worker can be
handed is checked here, before Celery's trace code touches it.

Measured with celery 5.7 and the threads pool: a body Celery's request accepted
(anything that unpacks into three values, e.g. the JSON string ``"str"``) but its
trace setup could not use (``request.update(**embed)`` with an embed that is not a
map, a task id that is not a string, ...) raised in the pool thread outside any
handler. The message was never acknowledged, its prefetch slot stayed taken, and a
worker of concurrency 1 stopped consuming for good; after the visibility timeout the
message stopped the next worker too.

:class:`ChunkRequest` raises :class:`~celery.exceptions.InvalidTaskError` from its
constructor instead: Celery's consumer then logs the refusal once ("Received invalid
task message"), rejects the message without requeue (it leaves the unacked index) and
sends ``task_rejected``, which the worker's metrics count. The chunk's own fields are
checked later, inside the task (``tasks.contract.wire.validate_request``), where a bad field
fails the chunk with a recorded error.

It also keeps chunk texts (user data, often personal) out of what a worker shows of a
request: ``celery inspect active|reserved``, task events (Flower) and log lines get a
summary (job, chunk, model, number of texts), never the texts.
"""

from __future__ import annotations

import re
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.request import Request
from kombu.exceptions import ContentDisallowed

from tasks.routing import ROWS_HEADER

#: Keys of the third body element (Celery's protocol 2 "embed").
EMBED_KEYS = frozenset({"callbacks", "errbacks", "chain", "chord"})
#: Characters of a task id (Celery's ids are 36; ours are job id + chunk index).
MAX_ID_CHARS = 256
#: Header name -> the types its value may have (None always allowed unless required).
HEADER_TYPES: dict[str, tuple[type, ...]] = {
    "root_id": (str,),
    "parent_id": (str,),
    "group": (str,),
    "group_index": (int,),
    "shadow": (str,),
    "eta": (str,),
    "expires": (str,),
    "argsrepr": (str,),
    "kwargsrepr": (str,),
    "origin": (str,),
    "lang": (str,),
    "ignore_result": (bool,),
    "replaced_task_nesting": (int,),
    "stamped_headers": (list,),
    "stamps": (dict,),
}


def check_headers(headers: Any) -> None:
    """Raise :class:`InvalidTaskError` unless ``headers`` are ones Celery can run."""
    if not isinstance(headers, dict):
        raise InvalidTaskError(f"headers must be a map, got {type(headers).__name__}")
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_ID_CHARS:
        raise InvalidTaskError(f"header id must be a string of 1-{MAX_ID_CHARS} characters")
    retries = headers.get("retries", 0)
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
    ):
        raise InvalidTaskError("header retries must be a non-negative integer")
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
        isinstance(timelimit, list | tuple)
        and len(timelimit) == 2
        and all(_is_number(t) or t is None for t in timelimit)
    ):
        raise InvalidTaskError("header timelimit must be [soft, hard] seconds or nulls")
    for name, types in HEADER_TYPES.items():
        value = headers.get(name)
        if value is not None and (
            not isinstance(value, types) or (bool not in types and isinstance(value, bool))
        ):
            raise InvalidTaskError(f"header {name} must be {types[0].__name__} or null")
    for name in EMBED_KEYS:
        if headers.get(name) is not None:
            raise InvalidTaskError(f"header {name} is not accepted: chunks take no links")


def check_body(body: Any) -> None:
    """Raise :class:`InvalidTaskError` unless ``body`` is ``[args, kwargs, embed]`` with
    a list, a map of string keys, and a map (or null) of Celery's keys with no links."""
    if not isinstance(body, list | tuple) or len(body) != 3:
        raise InvalidTaskError(f"body must be [args, kwargs, embed], got {_describe(body)}")
    args, kwargs, embed = body
    if not isinstance(args, list | tuple):
        raise InvalidTaskError(f"body args must be a list, got {_describe(args)}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise InvalidTaskError(f"body kwargs must be a map of names, got {_describe(kwargs)}")
    if embed is None:
        return
    if not isinstance(embed, dict) or not all(isinstance(k, str) for k in embed):
        raise InvalidTaskError(f"body embed must be a map or null, got {_describe(embed)}")
    unknown = set(embed) - EMBED_KEYS
    if unknown:
        raise InvalidTaskError(f"body embed has unknown key(s) {sorted(unknown)[:5]}")
    linked = sorted(k for k, v in embed.items() if v not in (None, []))
    if linked:
        raise InvalidTaskError(f"body embed names {linked}: chunks take no links")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    if isinstance(value, list | tuple | dict | str | bytes):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__


class ChunkRequest(Request):  # type: ignore[misc]
    """Celery's request, refusing what its trace setup would raise on (module docstring)."""

    def __init__(
        self,
        message: Any,
        *args: Any,
        body: Any = None,
        headers: Any = None,
        decoded: bool = False,
        **kwargs: Any,
    ) -> None:
        check_headers(message.headers if headers is None else headers)
        if decoded:
            payload = message.body if body is None else body
        else:
            try:
                payload = message.payload
            except ContentDisallowed:
                raise  # pickle, YAML: Celery's consumer refuses and counts these itself
            except Exception as exc:  # counted and logged as an invalid message
                raise InvalidTaskError(f"body does not decode: {exc}") from exc
        check_body(payload)
        super().__init__(message, *args, body=body, headers=headers, decoded=decoded, **kwargs)
        # Chunk texts are user data: what inspect, events (Flower) and logs show of a
        # request is a summary made here, whatever repr the sender put on the wire.
        self._argsrepr = f"<{len(self._args)} positional>" if self._args else "()"
        self._kwargsrepr = summarize(self._kwargs, self._request_dict.get(ROWS_HEADER))

    def send_event(self, type: str, **fields: Any) -> Any:
        """As Celery's, but the ``task-succeeded`` event (what Flower shows) carries a
        summary of a list chunk's result, not a dump of its vector bytes. (Celery's
        request subclass overrides ``on_success``, so the event is where to catch it.)"""
        if type == "task-succeeded" and "result" in fields:
            fields["result"] = summarize_result(fields["result"])
        return super().send_event(type, **fields)

    def info(self, safe: bool = False) -> dict[str, Any]:
        """What ``celery inspect active|reserved`` shows: always the summaries."""
        return dict(super().info(safe=True))


_ROWS = re.compile(r"\d{1,18}-\d{1,18}")
#: The start of a list chunk result's repr: ``{'shape': [n, dim], 'dtype': '<f4', ...``.
_RESULT_HEAD = re.compile(r"\{'shape': \[(\d+), (\d+)\], 'dtype': '([<>|]?\w+)'")


def summarize(kwargs: dict[str, Any], rows: Any = None) -> str:
    """A chunk's kwargs without its texts, in the producer's kwargsrepr form: a list
    chunk ``{'job_id': 'j', 'index': 0, 'model': 'm', 'texts': <2 texts>}``, a dataset
    chunk (no texts) ``{'job_id': 'j', 'index': 0, 'model': 'm', 'rows': '0-1023'}``."""
    shown = [f"{k!r}: {_short(kwargs[k])!r}" for k in ("job_id", "index", "model") if k in kwargs]
    if "texts" not in kwargs and set(kwargs) <= {"job_id", "index", "model"}:
        span = rows if isinstance(rows, str) and _ROWS.fullmatch(rows) else "?"
        return "{" + ", ".join([*shown, f"'rows': '{span}'"]) + "}"
    texts = kwargs.get("texts")
    count = len(texts) if isinstance(texts, list) else "?"
    return "{" + ", ".join([*shown, f"'texts': <{count} texts>"]) + "}"


def summarize_result(retval: Any) -> Any:
    """``<n x dim <f4>`` for a list chunk's result repr; anything else unchanged."""
    match = _RESULT_HEAD.match(retval) if isinstance(retval, str) else None
    if match is None:
        return retval
    rows, dim, dtype = match.groups()
    return f"<{rows} x {dim} {dtype}>"


def _short(value: Any) -> Any:
    return (
        value
        if isinstance(value, int) or (isinstance(value, str) and len(value) <= 130)
        else "<...>"
    )
