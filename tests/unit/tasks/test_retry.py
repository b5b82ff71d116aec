"""tasks.jobs.redis_retry: redis-py's Retry with backoff inside a deadline; only "unreachable"
errors are retried."""

from __future__ import annotations

import json

import pytest
import redis
from kombu.exceptions import OperationalError

from tasks.contract.logs import JsonFormatter
from tasks.jobs import redis_retry as retry_module
from tasks.jobs.redis_retry import retry_while_unreachable


class Clock:
    """time.monotonic and time.sleep of the retry loop, without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(retry_module.time, "monotonic", fake.monotonic)
    monkeypatch.setattr("redis.retry.sleep", fake.sleep)
    return fake


def failing(times: int, error: BaseException, result: str = "ok"):
    calls = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return result

    return call, calls


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("Connection refused"),
        redis.TimeoutError("Timeout reading from socket"),
        ConnectionResetError("reset by peer"),
        OperationalError("Error 111 connecting"),
    ],
)
def test_unreachable_redis_is_retried_with_backoff(clock: Clock, error: BaseException):
    call, calls = failing(5, error)
    assert retry_while_unreachable(call) == "ok"
    assert len(calls) == 6
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])


def test_the_backoff_is_capped_and_the_window_is_60_s(clock: Clock):
    call, calls = failing(10**6, redis.ConnectionError("down"))
    started = clock.now
    with pytest.raises(redis.ConnectionError, match="down"):
        retry_while_unreachable(call)
    assert max(clock.sleeps) == 2.0
    # it waited as long as the window allows, and not a wait more
    assert 58.0 <= clock.now - started <= 60.0
    assert len(calls) == len(clock.sleeps) + 1


def test_a_shorter_window_gives_up_sooner(clock: Clock):
    call, _ = failing(10**6, redis.TimeoutError("slow"))
    started = clock.now
    with pytest.raises(redis.TimeoutError):
        retry_while_unreachable(call, deadline_s=1.0)
    assert clock.now - started <= 1.0


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(2, "No such file or directory", "out/part-000001.parquet"),
        PermissionError(13, "Permission denied", "/readonly/out.npy"),
        ValueError("a bug, not a blink"),
        redis.ResponseError("WRONGTYPE"),
    ],
)
def test_other_errors_are_raised_at_once(clock: Clock, error: BaseException):
    call, calls = failing(1, error)
    with pytest.raises(type(error)):
        retry_while_unreachable(call)
    assert len(calls) == 1 and clock.sleeps == []


def test_each_retry_is_logged_when_the_call_is_named(clock: Clock, caplog):
    call, _ = failing(2, redis.ConnectionError("refused"))
    with caplog.at_level("WARNING", logger="tasks.jobs.redis_retry"):
        retry_while_unreachable(call, what="storing chunk 3")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("what='storing chunk 3'" in line for line in lines)


def test_a_retry_line_in_json_carries_the_values_typed(clock: Clock, caplog):
    # Given a call that fails once while Redis is away
    call, _ = failing(1, redis.ConnectionError("refused"))
    # When the retry is logged and written as a JSON line
    with caplog.at_level("WARNING", logger="tasks.jobs.redis_retry"):
        retry_while_unreachable(call, what="storing chunk 3")
    (record,) = caplog.records
    doc = json.loads(JsonFormatter().format(record))
    # Then the line holds the loop's own values: the wait a float, the texts unquoted
    assert (doc["event"], doc["what"], doc["error"]) == (
        "redis_retry",
        "storing chunk 3",
        "refused",
    )
    assert type(doc["delay_s"]) is float and doc["delay_s"] == clock.sleeps[0]
