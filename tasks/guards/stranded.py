"""Messages a worker process took off a queue but could not record as taken.

On kombu's BRPOP path (``tasks.guards.taking`` says where that path still runs) a
message is off its list before the worker records it in the ``unacked`` hash; a
connection that breaks in between (a Redis restart, a network cut) leaves it in no list
and no hash. The process keeps such a message here and puts it back at the consuming
end of its queue as soon as a channel of the process polls again (after the
reconnect), unless the record did make it (then the visibility timeout or a live
worker's reclaim gives it back). Measured before: a Redis restart at that moment left a
job at 39 of 40 chunks for good.
"""

from __future__ import annotations

import threading
from typing import Any

from kombu.utils.json import dumps

from tasks.contract.logs import event_logger
from tasks.jobs import redis_full

log = event_logger(__name__)

#: Characters of a message kept in a log line.
LOGGED_CHARS = 200


class Stranded:
    """Messages this process took off a queue and could not record as taken (the link
    broke in between), each with the queue it came from, until they are put back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[str, Any]] = []

    def keep(self, queue: str, raw_message: Any) -> None:
        with self._lock:
            self._items.append((queue, raw_message))
        log.warning(
            "event=message_stranded queue=%s reason=%r item=%s",
            queue,
            "the connection broke between taking the message and recording it as taken; "
            "it goes back on its queue once Redis answers",
            excerpt(raw_message),
        )

    def __len__(self) -> int:
        return len(self._items)

    def give_back(self, channel: Any) -> None:
        """Put every kept message back (oldest first) through ``channel``'s Redis; stops
        at the first failure (the link is still down: the next poll tries again)."""
        while self._items:
            with self._lock:
                queue, raw_message = self._items[0]
            with channel.conn_or_acquire() as client:
                tag = (raw_message.get("properties") or {}).get("delivery_tag")
                recorded = tag is not None and client.hexists(channel.unacked_key, tag)
                if not recorded:
                    priority = channel._get_message_priority(raw_message, reverse=False)
                    key = channel._q_for_pri(queue, priority)
                    redis_full.give_back(client, key, dumps(raw_message))
            with self._lock:
                self._items.pop(0)
            log.warning(
                "event=message_given_back queue=%s how=%s item=%s",
                queue,
                "in the unacked hash already" if recorded else "put back on its queue",
                excerpt(raw_message),
            )


#: This process's stranded messages: one per process, as the messages outlive the
#: channel (and the connection) that took them.
STRANDED = Stranded()


def excerpt(raw: Any) -> str:
    """``raw``'s repr, cut to :data:`LOGGED_CHARS` for a log line."""
    text = repr(raw)
    return text if len(text) <= LOGGED_CHARS else text[:LOGGED_CHARS] + "..."
