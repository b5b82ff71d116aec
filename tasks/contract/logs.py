"""Log lines: ``key=value`` text (logfmt), or one JSON object a line.

An embedfleet event is logged as ``event=<name> key=value ...`` (lazy %-args) through a
module logger made by :func:`event_logger`, which attaches the call's own values as
``extra={"fields": {...}}``; the model-memory subscriber
(``workers.observability.event_log``) attaches its events' fields the same way.
:class:`KeyValueFormatter` prefixes the text with ``time= level= logger=`` so a whole
line is logfmt; :class:`JsonFormatter` writes a JSON object from the fields, typed as
the caller passed them (``"seconds": 0.52``, ``"chunk": 3``). No formatter reads a
message back: a record without fields (Celery's own lines, any prose) is written as its
text, under ``msg=`` in a text line and ``"message"`` in a JSON one.

``EMBEDFLEET_LOG_JSON=1`` picks JSON lines; :func:`configure_logging` is called by
``embedfleet worker`` and by every other ``embedfleet`` command. Stdlib only: producers
import this module too.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import sys
import time
from typing import Any, TextIO

#: LogRecord attributes that are not ``extra=`` fields.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
#: One pair of an event template: ``key=%s`` (a value given with the call) or ``key=word``.
_TEMPLATE_PAIR = re.compile(r"([A-Za-z_]\w*)=(?:(%[-#0 +]*\d*(?:\.\d+)?[sdifgrx])|([^\s%=]+))")


@functools.lru_cache(maxsize=1024)
def event_template(template: str) -> tuple[tuple[str, str | None], ...]:
    """The pairs of an event template, in order: ``(key, literal)``, literal None for a
    value the call gives (a %-placeholder).

    A template is ``event=<name>`` then ``key=%s``-style pairs, one space apart, each key
    once (``"event=chunk_done job=%s chunk=%d seconds=%.3f"``). Read once per template
    (the code's constant), never from a formatted line. Raises ValueError naming the
    template when it is not that shape.
    """
    pairs: list[tuple[str, str | None]] = []
    for token in template.split(" "):
        match = _TEMPLATE_PAIR.fullmatch(token)
        if match is None:
            raise ValueError(f"event template {template!r}: {token!r} is not key=%s or key=word")
        pairs.append((match.group(1), match.group(3)))
    keys = [key for key, _ in pairs]
    if keys[0] != "event" or pairs[0][1] is None:
        raise ValueError(f"event template {template!r} does not start with event=<name>")
    if len(set(keys)) != len(keys):
        raise ValueError(f"event template {template!r} names a key twice")
    return tuple(pairs)


def event_fields(template: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """The fields of one event line: each key of ``template`` with the value the call
    passed for it (the object itself: an int stays an int, a float a float) or the word
    the template writes (``op=get``). Raises ValueError when ``args`` do not fill the
    template's placeholders."""
    pairs = event_template(template)
    wanted = sum(literal is None for _, literal in pairs)
    if wanted != len(args):
        raise ValueError(f"event template {template!r} takes {wanted} values, got {len(args)}")
    given = iter(args)
    return {key: next(given) if literal is None else literal for key, literal in pairs}


class EventLogger(logging.LoggerAdapter[logging.Logger]):
    """A module's logger whose ``event=`` lines carry their fields.

    ``log = event_logger(__name__)``, then ``log.info("event=chunk_done job=%s chunk=%d",
    job_id, index)`` writes the same lazy key=value text a plain logger would, with
    ``extra={"fields": event_fields(template, args)}`` attached, so
    :class:`JsonFormatter` writes typed values without reading the text. A message that
    does not start with ``event=`` passes through unchanged.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, None)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        if isinstance(msg, str) and msg.startswith("event="):
            kwargs["extra"] = {**(kwargs.get("extra") or {}), "fields": event_fields(msg, args)}
        # the caller's frame, not this method's, names the line (``funcName``, ``lineno``)
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        self.logger.log(level, msg, *args, **kwargs)


def event_logger(name: str) -> EventLogger:
    """``logging.getLogger(name)`` wrapped so its ``event=`` lines carry their fields."""
    return EventLogger(logging.getLogger(name))


def _quote(value: str) -> str:
    """A logfmt value: bare when it has no space, quote or equals sign; else quoted."""
    if value and not any(c in value for c in ' "=\n\t'):
        return value
    return json.dumps(value, ensure_ascii=False)


def event_text(template: str, args: tuple[Any, ...]) -> str:
    """An event line's logfmt text: each value formatted by its placeholder, quoted when
    it holds a space, quote, equals sign or line break (a job id or path from the wire
    cannot start a forged line or split a pair); ``%r`` values stay as ``repr`` wrote
    them (never a raw line break)."""
    given = iter(args)
    out = []
    for token in template.split(" "):
        key, _, value = token.partition("=")
        if value.startswith("%"):
            value = value % (next(given),)
            if not token.endswith("r") or "\n" in value or "\r" in value:
                value = _quote(value)
        out.append(f"{key}={value}")
    return " ".join(out)


def _event_message(record: logging.LogRecord) -> str:
    """The text of an event record: rebuilt with quoting from its template and values
    when it has them; as given otherwise."""
    if isinstance(record.msg, str) and isinstance(record.args, tuple):
        try:
            event_template(record.msg)
            return event_text(record.msg, record.args)
        except (ValueError, TypeError, StopIteration):
            pass
    return record.getMessage()


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}{time.strftime('%z', time.localtime(record.created))}"


def _fields(record: logging.LogRecord) -> dict[str, Any] | None:
    """The fields an event record carries (``extra={"fields": ...}``), else None."""
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else None


class KeyValueFormatter(logging.Formatter):
    """``time=... level=INFO logger=workers.memory.model_cache event=model_loaded model=m seconds=1.20``."""

    def format(self, record: logging.LogRecord) -> str:
        head = f"time={_timestamp(record)} level={record.levelname} logger={record.name}"
        if _fields(record) is not None:
            body = _event_message(record)
        else:
            body = f"msg={_quote(record.getMessage())}"
        line = f"{head} {body}"
        if record.exc_info:
            line += f" exc={_quote(self.formatException(record.exc_info))}"
        return line


def _json_value(value: Any) -> Any:
    """``value`` as strict JSON can hold it: a numpy scalar as its Python number (found by
    its ``item()``, so this module needs no numpy), a NaN or infinity as null, inside
    lists, tuples and dicts too; anything else as it is (``default=str`` writes the rest)."""
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (str, int)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if type(value).__module__ == "numpy" and callable(getattr(value, "item", None)):
        try:
            item = value.item()
        except (ValueError, TypeError):  # an array of more than one value
            return value
        if isinstance(item, (bool, int, float, str)):
            return _json_value(item)
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, then the record's fields
    (an event's) or its ``message`` (any other line), never a parse of the text. The line
    is strict JSON: numpy scalars are written as numbers, NaN and infinities as null."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = _fields(record)
        if fields is None:
            doc["message"] = record.getMessage()
        else:
            doc.update({k: v for k, v in fields.items() if k not in doc})
        for key, value in vars(record).items():  # other extra={...} keys
            if key not in _RECORD_ATTRS and key not in doc and key != "fields":
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(_json_value(doc), ensure_ascii=False, default=str, allow_nan=False)


def make_formatter(json_lines: bool = False) -> logging.Formatter:
    """JSON lines (``EMBEDFLEET_LOG_JSON=1``, ``Settings.log_json``) or key=value text."""
    return JsonFormatter() if json_lines else KeyValueFormatter()


def configure_logging(
    level: str | int = "INFO", stream: TextIO | None = None, json_lines: bool = False
) -> None:
    """Send every log record to ``stream`` (stderr) as key=value text or JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(json_lines))
    if isinstance(level, str):
        level = level.upper()
    logging.basicConfig(level=level, handlers=[handler], force=True)
