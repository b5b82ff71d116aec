"""Hostile chunk bodies: envelopes that kombu decodes fine and whose body Celery's
trace setup used to choke on outside any handler (``args, kwargs, embed = body`` then
``request.update(**embed)``), which left the message unacked and the pool slot lost.

:func:`hostile_messages` returns ``(category, raw queue item)`` pairs generated from a
seed: scalar bodies, wrong arity, a wrong type in each of the three positions, embeds
that name callbacks or chains, maps with non-string keys, huge and deeply nested
bodies, and headers of wrong types; as JSON and as msgpack.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import msgpack

from tests.fault.malformed import envelope, headers, valid_kwargs

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
#: Values that are not what a position of the body holds, for any position.
JUNK: list[Any] = ["str", "x", "abc", "", 0, 7, -1, 1.5, True, None, [], [1, 2, 3], {}]


def _json(body: Any) -> tuple[bytes, str, str]:
    return json.dumps(body).encode(), "application/json", "utf-8"


def _msgpack(body: Any) -> tuple[bytes, str, str]:
    return msgpack.packb(body), "application/x-msgpack", "binary"


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def hostile_bodies(model: str, rng: random.Random) -> list[tuple[str, Any]]:
    """``(category, body)`` pairs; none is a valid chunk body."""
    kw = valid_kwargs(model)
    out: list[tuple[str, Any]] = []
    out += [("scalar", v) for v in JUNK if not isinstance(v, list)]
    out += [("scalar", "a" * n) for n in (3, 4, 300)]
    out += [
        ("arity", []),
        ("arity", [[]]),
        ("arity", [[], kw]),
        ("arity", [[], kw, EMBED, {}]),
        ("arity", [[], kw, EMBED, {}, "x"]),
    ]
    # maps holding "args" are Celery's hybrid protocol 1 bodies: wrong values in them
    out += [
        ("hybrid", {"args": 5, "kwargs": kw}),
        ("hybrid", {"args": "abc", "kwargs": kw}),
        ("hybrid", {"args": [], "kwargs": [1]}),
        ("hybrid", {"args": [], "kwargs": "x"}),
        ("hybrid", {"args": [], "kwargs": kw, "callbacks": "x"}),
        ("hybrid", {"args": [], "kwargs": kw, "errbacks": [{"task": "os.system"}]}),
        ("hybrid", {"args": [], "kwargs": kw, "chord": 5}),
    ]
    for junk in JUNK:
        if not isinstance(junk, list):
            out.append(("args type", [junk, kw, EMBED]))
        if not isinstance(junk, dict):
            out.append(("kwargs type", [[], junk, EMBED]))
        if junk is not None and not isinstance(junk, dict):
            out.append(("embed type", [[], kw, junk]))
    out += [
        ("embed type", [[], kw, [["callbacks", None]]]),
        ("embed type", [[], kw, "ab"]),
        ("embed link", [[], kw, {**EMBED, "callbacks": "x"}]),
        ("embed link", [[], kw, {**EMBED, "callbacks": [{"task": "os.system"}]}]),
        ("embed link", [[], kw, {**EMBED, "errbacks": [1, 2]}]),
        ("embed link", [[], kw, {**EMBED, "chain": "x"}]),
        ("embed link", [[], kw, {**EMBED, "chain": [{"task": "celery.map"}]}]),
        ("embed link", [[], kw, {**EMBED, "chord": 5}]),
        ("embed link", [[], kw, {**EMBED, "group_index": "x", "evil": 1}]),
        ("embed link", [[], kw, {"args": [1], "kwargs": {}}]),
        ("kwargs keys", [[], {1: 2, "job_id": "j"}, EMBED]),
        ("embed keys", [[], kw, {1: 2}]),
        ("embed keys", [[], kw, {b"callbacks": None}]),
    ]
    # huge and nested
    out += [
        ("huge", [list(range(200_000)), kw, EMBED]),
        ("huge", [[], {**kw, "texts": ["y" * 10] * 200_000}, EMBED]),
        ("huge", [[], kw, {**EMBED, "chain": list(range(100_000))}]),
        ("huge", "z" * 2_000_000),
        ("nested", _nested(50, "x")),
        ("nested", [_nested(50, []), kw, EMBED]),
        ("nested", [[], kw, _nested(50, {})]),
        ("nested", [[], {**kw, "texts": _nested(50, "t")}, EMBED]),
        ("nested", _nested(100_000, 1)),  # deeper than any decoder recurses
    ]
    # random shapes: lists of 0-5 random values, with a bias to arity 3
    for _ in range(60):
        arity = rng.choice([0, 1, 2, 3, 3, 3, 4, 5])
        out.append(("random", [rng.choice(JUNK + [kw, EMBED]) for _ in range(arity)]))
    return [(c, b) for c, b in out if not _is_valid(b)]


def _is_valid(body: Any) -> bool:
    return (
        isinstance(body, list)
        and len(body) == 3
        and isinstance(body[0], list)
        and not body[0]
        and isinstance(body[1], dict)
        and body[1].get("texts") == ["a text"]
        and set(body[1]) <= {"job_id", "index", "model", "texts", "options"}
        and body[2] in (None, EMBED, {})
    )


#: Headers of wrong types (each alone), on an otherwise valid chunk.
BAD_HEADERS: list[dict[str, Any]] = [
    {"id": 5},
    {"id": ["x"]},
    {"id": {"a": 1}},
    {"id": ""},
    {"id": "x" * 10_000},
    {"retries": "0"},
    {"retries": -1},
    {"retries": [0]},
    {"timelimit": [1, 2, 3]},
    {"timelimit": "ab"},
    {"timelimit": ["x", None]},
    {"root_id": 5},
    {"parent_id": [1]},
    {"group": {"a": 1}},
    {"ignore_result": "yes"},
    {"argsrepr": 5},
    {"kwargsrepr": []},
    {"shadow": 5},
    {"eta": 5},
    {"expires": [1]},
    {"callbacks": "x"},
    {"chain": "x"},
    {"stamped_headers": 5},
    {"stamps": "x"},
    {"group_index": "x"},
]


def hostile_messages(queue: str, model: str, seed: int = 14) -> list[tuple[str, bytes]]:
    """Raw queue items (kombu envelopes) around :func:`hostile_bodies` and
    :data:`BAD_HEADERS`, each body once as JSON and once as msgpack."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for category, body in hostile_bodies(model, rng):
        for encode in (_json, _msgpack):
            try:
                raw, ctype, enc = encode(body)
            except (TypeError, ValueError, RecursionError):
                continue  # JSON has no non-string keys; a too deep value does not encode
            out.append((category, envelope(queue, raw, ctype, enc)))
    for bad in BAD_HEADERS:
        body = msgpack.packb([[], {**valid_kwargs(model), "job_id": uuid.uuid4().hex}, EMBED])
        out.append(("headers", envelope(queue, body, hdrs=headers(**bad))))
    return out
