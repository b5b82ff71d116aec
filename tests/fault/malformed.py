"""Malformed chunk messages, as raw items of a Redis queue list (what ``LPUSH`` by anyone
holding the Redis credentials, or a buggy producer, would leave there).

:func:`malformed_messages` returns ``(category, item)`` pairs: broken kombu envelopes,
pickle and other refused content types, unknown task names, bodies that do not
decode, bad headers, and chunk arguments of wrong types, missing, or over the limits.
Every pickle payload would create ``marker`` if it were ever unpickled.
"""

from __future__ import annotations

import base64
import json
import pickle
import random
import uuid
from pathlib import Path
from typing import Any

import msgpack

from tasks.routing import EMBED_TASK


class Unpickled:
    """Unpickling this object creates the marker file (and nothing else)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(Unpickled(marker))


def headers(task: Any = EMBED_TASK, **overrides: Any) -> dict[str, Any]:
    task_id = uuid.uuid4().hex
    base = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "eta": None,
        "expires": None,
        "retries": 0,
        "timelimit": [None, None],
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "malformed-test",
        "ignore_result": False,
    }
    base.update(overrides)
    return base


def envelope(
    queue: str,
    body: bytes,
    content_type: str = "application/x-msgpack",
    encoding: str = "binary",
    hdrs: Any = None,
    **props: Any,
) -> bytes:
    """A kombu Redis envelope (JSON) around ``body``."""
    properties = {
        "correlation_id": uuid.uuid4().hex,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
        **props,
    }
    item = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": encoding,
        "content-type": content_type,
        "headers": headers() if hdrs is None else hdrs,
        "properties": properties,
    }
    return json.dumps(item).encode()


def task_body(kwargs: Any, args: Any = ()) -> bytes:
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return msgpack.packb([list(args), kwargs, embed])


def valid_kwargs(model: str) -> dict[str, Any]:
    return {"job_id": uuid.uuid4().hex, "index": 0, "model": model, "texts": ["a text"]}


#: Wrong values for each chunk argument (each one alone makes a chunk invalid).
WRONG_VALUES: dict[str, list[Any]] = {
    "job_id": [None, 5, 1.5, "", "x" * 129, [], {}, True, b"bytes"],
    "index": [None, -1, "0", 1.5, True, [], {}, -(2**40)],
    "model": [None, "", "bad name!", "../etc/passwd", "a" * 129, 7, [], "-leading-dash"],
    "texts": [None, "a string", [], [1], [None], [["nested"]], {"a": 1}, [b"bytes"], 12],
    "options": ["x", [1], 3, {"evil": 1}, {"version": 5}, {"normalize": "yes"}],
}


def malformed_messages(queue: str, model: str, marker: Path, max_chunk_bytes: int) -> list:
    """At least 1,000 ``(category, raw queue item)`` pairs, none of them a valid chunk."""
    rng = random.Random(6)
    out: list[tuple[str, bytes]] = []

    def add(category: str, item: bytes) -> None:
        out.append((category, item))

    # 1. queue items that are not kombu envelopes at all
    for raw in (b"", b"\x00\xff\xfe", b"not json", b"{", b"[]", b"null", b"123", b'"s"', b"true"):
        add("not an envelope", raw)
    for _ in range(60):
        add("not an envelope", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
    # 2. JSON envelopes that kombu cannot read
    good = json.loads(envelope(queue, task_body(valid_kwargs(model))))
    breakers = [
        lambda e: e.pop("properties"),
        lambda e: e.update(properties=[1, 2]),
        lambda e: e["properties"].pop("delivery_tag"),
        lambda e: e["properties"].pop("delivery_info"),
        lambda e: e.update(body="%%% not base64 %%%"),
        lambda e: e["properties"].update(body_encoding="rot13"),
        lambda e: e.update(headers=[1, 2]),
        lambda e: e.update(headers="x"),
        lambda e: e["properties"].update(delivery_info={"exchange": ""}),
        lambda e: e.update(body=12),
    ]
    for i in range(100):
        env = json.loads(json.dumps(good))
        env["headers"] = headers()
        breakers[i % len(breakers)](env)
        add("broken envelope", json.dumps(env).encode())
    # 3. pickle, which must never be unpickled (protocol 2 and 1 layouts)
    for i in range(60):
        hdrs = headers() if i % 2 else {}
        add(
            "pickle",
            envelope(queue, pickle_payload(marker), "application/x-python-serialize", hdrs=hdrs),
        )
    # 4. other content types the fleet does not accept
    others = ["application/x-yaml", "text/plain", "application/data", "application/x-bson", ""]
    for i in range(40):
        ctype = others[i % len(others)]
        body = b"!!python/object/apply:os.system ['touch " + str(marker).encode() + b"']"
        add("refused content type", envelope(queue, body, ctype, "utf-8"))
    # 5. task names this worker does not run
    names: list[Any] = [
        "os.system",
        "celery.accumulate",
        "celery.map",
        "celery.chord_unlock",
        "celery.backend_cleanup",
        "tasks.chunks.embed.embed_chunk",
        EMBED_TASK + " ",
        "",
        5,
        ["embedfleet.embed_chunk"],
        {"a": 1},
    ]
    names += [f"embedfleet.{uuid.UUID(int=rng.getrandbits(128)).hex}" for _ in range(89)]
    for name in names:
        add("unknown task", envelope(queue, task_body(valid_kwargs(model)), hdrs=headers(name)))
    # 6. bodies of an accepted content type that do not decode
    bodies = [
        ("application/x-msgpack", "binary", b"\xc1\xc1\xc1"),
        ("application/x-msgpack", "binary", task_body(valid_kwargs(model))[:-7]),
        ("application/x-msgpack", "binary", b"\x93\x90\x81\xa6job_id\xa2\xff\xfe\x80"),
        ("application/json", "utf-8", b'[[], {"job_id": "\xff\xfe"}, {}]'),
        ("application/json", "utf-8", b"[[], {"),
    ]
    for i in range(100):
        ctype, enc, body = bodies[i % len(bodies)]
        add("undecodable body", envelope(queue, body, ctype, enc))
    # 7. headers Celery cannot use
    header_breaks = [
        {"eta": "not a date"},
        {"expires": "not a date"},
        {"timelimit": "x"},
        {"compression": "application/x-gzip"},
    ]
    for i in range(80):
        add(
            "bad headers",
            envelope(queue, task_body(valid_kwargs(model)), hdrs=headers(**header_breaks[i % 4])),
        )
    for _ in range(20):
        hdrs = headers()
        hdrs.pop("id")
        add("bad headers", envelope(queue, task_body(valid_kwargs(model)), hdrs=hdrs))
    # 8. chunk arguments of wrong types (one wrong field each)
    fields = list(WRONG_VALUES)
    for i in range(300):
        name = fields[i % len(fields)]
        values = WRONG_VALUES[name]
        kwargs = valid_kwargs(model)
        kwargs[name] = values[(i // len(fields)) % len(values)]
        add("wrong types", envelope(queue, task_body(kwargs)))
    # 9. missing fields, unknown fields, stray positional arguments
    for i in range(100):
        kwargs, args = valid_kwargs(model), []
        if i % 4 == 0:
            kwargs = {}
        elif i % 4 == 1:
            kwargs.pop(["job_id", "index", "model", "texts"][i % 3])
        elif i % 4 == 2:
            kwargs["evil"] = "__import__('os')"
        else:
            args = list(range(9))
        add("missing or extra fields", envelope(queue, task_body(kwargs, args)))
    # 10. over the limits, or not valid Unicode
    for i in range(20):
        kwargs = valid_kwargs(model)
        kwargs["texts"] = ["x" * (max_chunk_bytes + 1)] if i % 2 else ["t"] * 4097
        add("over a limit", envelope(queue, task_body(kwargs)))
    for _ in range(20):
        kwargs = {**valid_kwargs(model), "texts": ["\ud800"]}  # a lone surrogate
        body = json.dumps([[], kwargs, {}]).encode()  # JSON escapes it as "\\ud800"
        add("invalid unicode", envelope(queue, body, "application/json", "utf-8"))
    return out
