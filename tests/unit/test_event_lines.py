"""Every ``event=`` log line carries its fields, checked on the source.

A line written through a module's :func:`tasks.contract.logs.event_logger` carries the
call's values as ``extra={"fields": ...}`` (``EMBEDFLEET_LOG_JSON=1`` writes them typed);
a plain ``logging.getLogger`` line would reach JSON as text only. So every log call in
the packages whose message starts with ``event=`` must go to a logger made by
``event_logger`` (or pass the event's fields itself, as
``workers.observability.event_log`` does with ``extra=fields(e)``), and its template must
be ``event=<name> key=%s ...`` with one value per placeholder. (At run time,
``tests/unit/conftest.py`` fails any unit test during which an ``event=`` record without
fields was logged.)
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

from tasks.contract.logs import event_template

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "workers", "producers", "gateway")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _event_loggers(tree: ast.Module) -> set[str]:
    """Module-level names bound to ``event_logger(...)``."""
    names = set()
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "event_logger"
        ):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _template(call: ast.Call) -> ast.expr | None:
    """The message argument of a logging call (the second one of ``.log(level, msg)``)."""
    if not (isinstance(call.func, ast.Attribute) and call.func.attr in LEVELS):
        return None
    index = 1 if call.func.attr == "log" else 0
    return call.args[index] if len(call.args) > index else None


def _starts_an_event(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith("event=")
    if isinstance(node, ast.JoinedStr) and node.values:  # an f-string
        first = node.values[0]
        return isinstance(first, ast.Constant) and str(first.value).startswith("event=")
    return False


def _event_calls() -> list[tuple[str, ast.Call, ast.expr, set[str]]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            loggers = _event_loggers(tree)
            where = str(path.relative_to(ROOT))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and _starts_an_event(message := _template(node)):
                    assert message is not None
                    found.append((f"{where}:{node.lineno}", node, message, loggers))
    return found


def _carries_fields(call: ast.Call, loggers: set[str]) -> bool:
    assert isinstance(call.func, ast.Attribute)
    if isinstance(call.func.value, ast.Name) and call.func.value.id in loggers:
        return True
    extra = next((k.value for k in call.keywords if k.arg == "extra"), None)
    return (
        isinstance(extra, ast.Call)
        and isinstance(extra.func, ast.Name)
        and extra.func.id == "fields"
    )


def test_the_scan_finds_the_event_lines():
    names = set()
    for _, _, message, _ in _event_calls():
        if isinstance(message, ast.Constant):
            names.add(message.value.split(" ", 1)[0])
    # one from each package and the model-memory subscriber's own
    assert {
        "event=chunk_done",
        "event=wrapper_ready",
        "event=server_started",
        "event=batch_completed",
        "event=model_loaded",
    } <= names


def test_every_event_line_is_logged_with_its_fields():
    unfielded = [
        where for where, call, _, loggers in _event_calls() if not _carries_fields(call, loggers)
    ]
    assert unfielded == [], (
        "event= lines logged through a plain logger (use log = event_logger(__name__) from "
        "tasks.contract.logs):\n" + "\n".join(unfielded)
    )


def test_every_event_template_names_each_value():
    problems = []
    for where, call, message, _ in _event_calls():
        if not isinstance(message, ast.Constant):
            problems.append(f"{where}: an f-string; pass the values as %-arguments")
            continue
        try:
            pairs = event_template(message.value)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        index = 1 if isinstance(call.func, ast.Attribute) and call.func.attr == "log" else 0
        values = call.args[index + 1 :]
        wanted = sum(literal is None for _, literal in pairs)
        if not any(isinstance(v, ast.Starred) for v in values) and len(values) != wanted:
            problems.append(f"{where}: {wanted} placeholders, {len(values)} values")
    assert problems == [], "\n".join(problems)


def test_the_run_time_guard_catches_a_line_without_fields(event_lines_carry_fields):
    # Given the guard every unit test runs under (tests/unit/conftest.py)
    guard = event_lines_carry_fields
    # When an event= line goes through a plain logger
    logging.getLogger("tasks.plain").warning("event=plain_line n=%d", 1)
    # Then the guard names it (and this test empties it, having made it on purpose)
    assert [line.rsplit(": ", 1)[1] for line in guard.missing] == ["event=plain_line n=1"]
    guard.missing.clear()
