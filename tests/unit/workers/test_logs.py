"""Log lines: logfmt text by default, JSON objects with typed fields on request; event lines
carry their fields (event_logger), and no formatter reads a message back."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from tasks.contract.logs import (
    JsonFormatter,
    KeyValueFormatter,
    configure_logging,
    event_fields,
    event_logger,
    make_formatter,
)
from tasks.contract.settings import load_settings


def _record(msg: str, *args: object, name: str = "workers.memory.model_cache") -> logging.LogRecord:
    """A record as a plain logger makes it: text only, no fields."""
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def _event(template: str, *args: object) -> logging.LogRecord:
    """A record as an event_logger makes it: the text and the call's values as fields."""
    record = _record(template, *args)
    record.fields = event_fields(template, args)
    return record


def test_key_value_line_is_logfmt_and_wraps_prose():
    line = KeyValueFormatter().format(_event("event=model_loaded model=%s seconds=%.2f", "m", 1.5))
    assert line.split(" ", 3)[1:] == [
        "level=INFO",
        "logger=workers.memory.model_cache",
        "event=model_loaded model=m seconds=1.50",
    ]
    assert line.startswith("time=")
    prose = KeyValueFormatter().format(_record("Connected to %s", "redis://x", name="celery"))
    assert prose.endswith('msg="Connected to redis://x"')


def test_json_line_has_typed_fields_and_exception():
    record = _event(
        "event=chunk_done job=%s chunk=%d model=%s texts=%d seconds=%.3f", "ab12", 3, "m", 16, 0.25
    )
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "INFO" and doc["logger"] == "workers.memory.model_cache"
    assert (doc["event"], doc["job"], doc["chunk"], doc["texts"], doc["seconds"]) == (
        "chunk_done",
        "ab12",
        3,
        16,
        0.25,
    )
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "Task failed", (), sys.exc_info()
        )
    doc = json.loads(JsonFormatter().format(failed))
    assert doc["message"] == "Task failed" and "ValueError: boom" in doc["exc"]


def test_a_json_line_keeps_the_types_the_call_passed(caplog):
    # Given values whose text would read as another type: a float written with no
    # decimals, an id of digits only, a note holding spaces, quotes and an equals sign
    log = event_logger("workers.test_events")
    with caplog.at_level(logging.INFO, logger="workers.test_events"):
        log.info(
            "event=encoded ref=%s texts=%d seconds=%.0f share=%.2f note=%r ok=%s",
            "12345",
            16,
            2.0,
            0.5,
            'a=b "c" d',
            True,
        )
    (record,) = caplog.records
    assert record.getMessage() == (
        "event=encoded ref=12345 texts=16 seconds=2 share=0.50 note='a=b \"c\" d' ok=True"
    )
    # When it is written as a JSON line
    doc = json.loads(JsonFormatter().format(record))
    # Then each value has the type the call gave it, not one guessed from the text
    assert doc["event"] == "encoded"
    assert (doc["ref"], doc["texts"], doc["seconds"], doc["share"]) == ("12345", 16, 2.0, 0.5)
    assert [type(doc[k]) for k in ("ref", "texts", "seconds", "share", "ok")] == [
        str,
        int,
        float,
        float,
        bool,
    ]
    assert doc["note"] == 'a=b "c" d' and "message" not in doc


def test_a_line_without_fields_is_not_read_back():
    # an event-shaped text that came through a plain logger stays text
    doc = json.loads(JsonFormatter().format(_record("event=chunk_done job=%s chunk=%d", "j", 3)))
    assert doc["message"] == "event=chunk_done job=j chunk=3"
    assert "event" not in doc and "chunk" not in doc
    line = KeyValueFormatter().format(_record("event=chunk_done job=%s chunk=%d", "j", 3))
    assert line.endswith('msg="event=chunk_done job=j chunk=3"')


@pytest.mark.parametrize(
    ("value", "kind"), [("1", JsonFormatter), ("", KeyValueFormatter), ("0", KeyValueFormatter)]
)
def test_the_setting_switches_to_json(value, kind):
    json_lines = load_settings({"EMBEDFLEET_LOG_JSON": value}).log_json
    assert type(make_formatter(json_lines)) is kind


def test_configure_logging_writes_json_lines():
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", stream, json_lines=True)
        event_logger("workers.test").info(
            "event=config_change config_hash=%s added=%s", "0123", "a,b"
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    doc = json.loads(stream.getvalue().strip())
    assert (
        doc["event"] == "config_change" and doc["config_hash"] == "0123" and doc["added"] == "a,b"
    )


def test_event_lines_are_written_from_the_events_fields_not_their_text(caplog):
    # Given an eviction whose reason holds what logfmt parsing would trip on
    import dataclasses

    from workers.observability.event_log import LogSubscriber
    from workers.observability.events import ModelEvicted

    zeros = {f.name: 0.0 for f in dataclasses.fields(ModelEvicted)}
    event = ModelEvicted(
        **{**zeros, "model": "m", "reason": 'a=b "quoted" x', "policy": "largest"},
    )
    event = dataclasses.replace(event, rss_gb_before=2.0, rss_gb_after=0.5)
    with caplog.at_level(logging.INFO):
        LogSubscriber().on_model_evicted(event)
    (record,) = [r for r in caplog.records if "event=model_evicted" in r.getMessage()]
    # When it is written as JSON
    doc = json.loads(JsonFormatter().format(record))
    # Then every field is the event's own, typed as the event types it
    assert doc["event"] == "model_evicted" and doc["model"] == "m"
    assert doc["reason"] == 'a=b "quoted" x'
    assert doc["rss_gb_freed"] == 1.5 and doc["policy"] == "largest"
    assert "fields" not in doc and "message" not in doc


def test_event_logger_writes_the_same_text_with_typed_fields(caplog):
    # Given a module logger made by event_logger
    log = event_logger("workers.test_events")
    template = "event=chunk_done job=%s chunk=%d seconds=%.3f op=get reason=%r"
    args = ("0123", 3, 0.25, "a b")
    # When it logs an event
    with caplog.at_level(logging.INFO, logger="workers.test_events"):
        log.info(template, *args)
    (record,) = caplog.records
    # Then the text is what a plain logger writes and the record carries the call's values
    assert record.getMessage() == template % args
    assert record.getMessage() == (
        "event=chunk_done job=0123 chunk=3 seconds=0.250 op=get reason='a b'"
    )
    assert record.fields == {
        "event": "chunk_done",
        "job": "0123",
        "chunk": 3,
        "seconds": 0.25,
        "op": "get",
        "reason": "a b",
    }
    assert [type(record.fields[k]) for k in ("job", "chunk", "seconds")] == [str, int, float]
    # and the line names the caller, not the adapter
    assert record.funcName == "test_event_logger_writes_the_same_text_with_typed_fields"


def test_event_logger_passes_other_messages_through(caplog):
    log = event_logger("workers.test_events")
    with caplog.at_level(logging.DEBUG, logger="workers.test_events"):
        log.debug("Connected to %s", "redis://x")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("event=watchdog_error")
    prose, failed = caplog.records
    assert prose.getMessage() == "Connected to redis://x" and not hasattr(prose, "fields")
    assert failed.levelno == logging.ERROR and failed.exc_info is not None
    assert failed.fields == {"event": "watchdog_error"}


@pytest.mark.parametrize(
    ("template", "args", "problem"),
    [
        ("model=%s", ("m",), "does not start with event=<name>"),
        ("event=x job %s", ("j",), "'job' is not key=%s or key=word"),
        ("event=x job=%s job=%s", ("a", "b"), "names a key twice"),
        ("event=x job=%s chunk=%d", ("a",), "takes 2 values, got 1"),
        ("event=x seconds=%.2fs", (1.0,), "is not key=%s or key=word"),
    ],
)
def test_a_malformed_event_template_is_named(template, args, problem):
    with pytest.raises(ValueError, match=re.escape(problem)) as raised:
        event_fields(template, args)
    assert repr(template) in str(raised.value)


def test_an_event_value_from_the_wire_cannot_start_a_line_or_split_a_pair():
    import io

    from tasks.contract.logs import configure_logging, event_logger

    out = io.StringIO()
    configure_logging("INFO", stream=out)
    try:
        log = event_logger("test.forge")
        forged = "j1\ntime=2026 level=INFO logger=x event=job_deleted job=victim"
        log.info("event=chunk_done job=%s chunk=%d seconds=%.3f", forged, 3, 1.23456)
        log.info("event=fetched path=%s reason=%r", "/tmp/my models/a", "make room for b")
    finally:
        configure_logging("WARNING")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "event=job_deleted" not in lines[1]
    assert lines[0].endswith(
        'event=chunk_done job="j1\\ntime=2026 level=INFO logger=x event=job_deleted '
        'job=victim" chunk=3 seconds=1.235'
    )
    assert lines[1].endswith("event=fetched path=\"/tmp/my models/a\" reason='make room for b'")


def test_json_line_writes_numpy_scalars_as_numbers_and_non_finite_floats_as_null():
    # Given an event whose values are numpy scalars and non-finite floats
    import numpy as np

    record = _event(
        "event=chunk_done rows=%d dim=%d seconds=%.3f ok=%s norm=%s low=%s extra=%s",
        np.int64(7),
        np.int32(384),
        np.float32(0.25),
        np.bool_(True),
        np.float64("nan"),
        float("-inf"),
        [np.int16(2), float("inf")],
    )
    # When it is written as JSON
    line = JsonFormatter().format(record)
    # Then the line is strict JSON, numbers are numbers and non-finite values are null
    doc = json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name} in {line}"))
    assert (doc["rows"], doc["dim"], doc["seconds"], doc["ok"]) == (7, 384, 0.25, True)
    assert [type(doc[k]) for k in ("rows", "dim", "seconds", "ok")] == [int, int, float, bool]
    assert doc["norm"] is None and doc["low"] is None
    assert doc["extra"] == [2, None]
