"""What the atomic take (tasks.guards.taking) costs against kombu's BRPOP, in one run.

Both paths run through the project's transport on one private Redis, side by side and
alternating (BRPOP, take, BRPOP, take, ...): messages are published onto a queue, then
a consumer drains them, acknowledging each, as a worker does (BRPOP path: kombu's BRPOP,
then the record as taken; take path: one script that records and takes). Prints
messages/s published and consumed on each path, their ratios, and the Redis commands
a thousand consumed messages cost (INFO cpu, the drain only). A worker's chunk takes milliseconds to
seconds to encode, so what matters is that neither rate comes near that.

    .venv/bin/python bench/take.py [--messages 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
import uuid

import _fleet


def _redis_cpu(client) -> float:
    """CPU seconds the Redis server has used so far."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def run(url: str, atomic: bool, messages: int) -> tuple[float, float, float]:
    """(published/s, consumed/s, Redis CPU ms per 1,000 consumed) on one path."""
    from kombu import Connection, Queue

    from tasks.guards import transport

    transport.Channel._takes_atomically = atomic  # the path under test, this process only
    name = f"embed.bench-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, routing_key=name)
    with Connection(url, transport="tasks.guards.transport:Transport") as conn:
        redis = conn.default_channel.client
        body = {"texts": ["a short text"] * 8}
        started = time.perf_counter()
        with conn.Producer() as producer:
            for _ in range(messages):
                producer.publish(body, routing_key=name, declare=[queue])
        published = messages / (time.perf_counter() - started)
        got = 0

        def on_message(_body, message) -> None:
            nonlocal got
            got += 1
            message.ack()

        before = _redis_cpu(redis)
        started = time.perf_counter()
        with conn.Consumer(queue, callbacks=[on_message]):
            while got < messages:
                conn.drain_events(timeout=5)
        consumed = messages / (time.perf_counter() - started)
        commands = (_redis_cpu(redis) - before) * 1e6 / messages
    return published, consumed, commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _fleet.header("atomic take against kombu's BRPOP (one consumer, one queue)")
    with _fleet.server() as url:
        results: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        for round_ in range(1, args.rounds + 1):
            for atomic in (False, True):
                pub, con, cmds = run(url, atomic, args.messages)
                results[atomic].append((pub, con, cmds))
                print(
                    f"round {round_} {'take ' if atomic else 'BRPOP'}  published {pub:8.0f}/s"
                    f"  consumed {con:8.0f}/s  Redis CPU {cmds:6.0f} ms/1000",
                    flush=True,
                )
        brpop = [_fleet.median([r[i] for r in results[False]]) for i in range(3)]
        take = [_fleet.median([r[i] for r in results[True]]) for i in range(3)]
        print(
            f"median BRPOP: published {brpop[0]:.0f}/s consumed {brpop[1]:.0f}/s "
            f"Redis CPU {brpop[2]:.0f} ms/1000 consumed"
        )
        print(
            f"median take:  published {take[0]:.0f}/s consumed {take[1]:.0f}/s "
            f"Redis CPU {take[2]:.0f} ms/1000 consumed"
        )
        print(
            f"take / BRPOP: publish {take[0] / brpop[0]:.2f}x  consume {take[1] / brpop[1]:.2f}x"
            f"  Redis CPU {take[2] / brpop[2]:.2f}x"
        )
    _fleet.footer()


if __name__ == "__main__":
    main()
