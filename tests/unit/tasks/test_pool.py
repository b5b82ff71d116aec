"""The net under Celery's trace setup (tasks/guards/pool.py): a target that raises has its
message rejected, its request marked done, and the thread lives on; the real path (a
worker process fed hostile bodies) is tests/fault/test_hostile_bodies.py."""

from __future__ import annotations

from typing import Any

from celery.signals import task_rejected
from celery.worker import state

from tasks.guards.pool import REFUSED, ThreadPool, guard


class Request:
    """Records what the pool does to the request whose trace setup raised."""

    id = "job.0"
    message = None

    def __init__(self) -> None:
        self.rejected: list[bool] = []
        self.successes: list[Any] = []

    def reject(self, requeue: bool = False) -> None:
        self.rejected.append(requeue)

    def on_success(self, result: Any) -> None:
        self.successes.append(result)


def setup_raises(*_: Any, **__: Any) -> Any:
    return {}.update(**"x")  # what `request.update(**embed)` did with embed "x"


def test_a_target_that_raises_rejects_its_message_and_frees_the_request():
    request = Request()
    state.active_requests.add(request)
    refused: list[Any] = []
    task_rejected.connect(lambda **kw: refused.append(kw["exc"]), weak=False)
    assert guard(setup_raises, request.on_success)() is REFUSED
    assert request.rejected == [False]  # not requeued: it would only come back
    assert request not in state.active_requests
    assert len(refused) == 1 and isinstance(refused[0], TypeError)


def test_the_pool_runs_the_next_target_after_one_that_raised():
    pool = ThreadPool(limit=1)
    pool.start()
    try:
        bad, good = Request(), Request()
        pool.on_apply(setup_raises, (), {}, callback=bad.on_success).wait(10)
        pool.on_apply(lambda: 42, (), {}, callback=good.on_success).wait(10)
        assert bad.rejected == [False] and not bad.successes
        assert good.successes == [42] and not good.rejected
    finally:
        pool.stop()
