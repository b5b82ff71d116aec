"""kombu's Redis transport, hardened against messages that are not kombu envelopes.

Measured with kombu 5.7: one item pushed onto a queue list that is not a JSON
envelope (``LPUSH embed.m garbage``) raised out of the worker's event loop and the
worker exited. An envelope without ``properties`` or with a bad base64 body did the
same, and an exception in Celery's message handler (e.g. a task name that is a list)
left the message in the ``unacked`` hash, so it came back after the visibility
timeout and killed the next worker too.

Here every such message is refused once: logged with the reason, removed from the
unacked index, never delivered again, and counted (Celery's ``task_rejected`` signal,
which the worker's metrics hear). Bodies and headers that kombu decodes but Celery's
trace setup would raise on are refused one step later, by ``tasks.guards.request``. Bodies are still decoded only by kombu's
serializer registry with the app's ``accept_content`` (msgpack, JSON), so pickle and
YAML are refused before anything is decoded. ``celeryconfig`` selects this transport
for ``redis://`` and ``rediss://`` URLs.

A message BRPOP took whose record as taken (kombu's unacked hash) the connection broke
before it could write is in no list and no hash: the process keeps it and puts it back
at the consuming end of its queue as soon as a channel of the process polls again
(after the reconnect), unless the record did make it (then the visibility timeout or a
live worker's reclaim gives it back). Measured before: a Redis restart at that moment
left a job at 39 of 40 chunks for good.

Two more duties: every message taken is recorded with the worker that holds it
(``tasks.guards.holders``, so a dead worker's chunks can be given back at once), and a
message that a full Redis will not let the worker record as taken is never dropped: a
chunk is recorded failed naming Redis memory, anything else goes back on its queue
(``tasks.jobs.redis_full``).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.signals import task_rejected
from kombu.exceptions import ContentDisallowed
from kombu.serialization import loads, prepare_accept_content
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.transport.virtual.base import Empty
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps
from kombu.utils.json import loads as json_loads

import celeryconfig
from tasks.contract.logs import event_logger
from tasks.contract.settings import Settings
from tasks.guards import taking
from tasks.guards.holders import HOLDERS_KEY, HolderQoS
from tasks.jobs import jobstore, redis_full
from tasks.jobs.deliveries import worker_id

log = event_logger(__name__)

#: Content types a body may have (never pickle): the app's own list.
ACCEPT = prepare_accept_content(celeryconfig.accept_content)
#: Characters of a refused item kept in the log line.
LOGGED_CHARS = 200
#: Seconds a worker waits after Redis refused a message it took for memory.
FULL_PAUSE_S = 2.0


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
            _excerpt(raw_message),
        )

    def __len__(self) -> int:
        return len(self._items)

    def give_back(self, channel: Channel) -> None:
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
                _excerpt(raw_message),
            )


#: This process's stranded messages: one per process, as the messages outlive the
#: channel (and the connection) that took them.
STRANDED = Stranded()


def _excerpt(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= LOGGED_CHARS else text[:LOGGED_CHARS] + "..."


def _chunk_of(raw_message: Any) -> tuple[str, int] | None:
    """(job id, chunk index) of a chunk message's envelope, None for anything else."""
    try:
        body = raw_message["body"]
        properties = raw_message["properties"]
        if properties.get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = loads(
            body, raw_message["content-type"], raw_message["content-encoding"], accept=ACCEPT
        )
        kwargs = decoded[1] if isinstance(decoded, list | tuple) else None
        job_id, index = kwargs.get("job_id"), kwargs.get("index")
    except Exception:
        return None
    if isinstance(job_id, str) and isinstance(index, int) and not isinstance(index, bool):
        return (job_id, index) if job_id and index >= 0 else None
    return None


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A Redis channel that refuses undecodable envelopes instead of dying on them, and
    records which worker holds each unacked message (``tasks.guards.holders``)."""

    QoS = HolderQoS
    #: Seconds a chunk failure recorded here lasts: the worker's ``EMBEDFLEET_RESULT_TTL_S``,
    #: which ``celeryconfig.url_settings`` puts in the broker's transport options (kombu
    #: sets each name of ``from_transport_options`` found there on the channel).
    result_ttl_s: int = Settings.model_fields["result_ttl_s"].default
    from_transport_options = (*kombu_redis.Channel.from_transport_options, "result_ttl_s")

    @property
    def _broken_link_errors(self) -> tuple[type[BaseException], ...]:
        # kombu counts KeyError among the Redis transport's connection errors; raised
        # while handling one message it means a malformed message (a header missing),
        # and treating it as a lost connection restores the message and loops forever.
        return tuple(e for e in self.connection_errors if not issubclass(e, LookupError))

    #: What the poll connection was last sent: "take" (:data:`taking.TAKE`), "bell"
    #: (BRPOP on the bells) or "brpop" (kombu's own, with a ``global_keyprefix``).
    _sent = "take"
    #: Whether the next poll takes at once (the last take found a message, or a bell
    #: rang or timed out) rather than waiting on the bells.
    _take_next = True
    #: Whether the message being delivered now was recorded as taken by the take itself.
    _recorded_by_take = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._no_ack_queues: set[str] = set()
        super().__init__(*args, **kwargs)

    @property
    def _takes_atomically(self) -> bool:
        # keys given to a script are not prefixed by kombu's prefixing client
        return not self.global_keyprefix

    def _brpop_start(self, timeout: Any = None) -> Any:
        if len(STRANDED):
            try:
                STRANDED.give_back(self)
            except self._broken_link_errors as exc:  # still down: the next poll tries
                log.debug("event=give_back_deferred error=%r", str(exc))
        if not self._takes_atomically:
            self._sent = "brpop"
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        connection = self.client.connection
        self._in_poll = connection
        self._brpop_sent_at = time.monotonic()
        if self._take_next:
            pairs = [(self._q_for_pri(q, pri), q) for pri in self.priority_steps for q in queues]
            keys = [key for key, _ in pairs]
            record = ["0" if q in self._no_ack_queues else "1" for _, q in pairs]
            self._sent = "take"
            connection.send_command(
                "EVAL",
                taking.TAKE,
                3 + len(keys),
                self.unacked_index_key,
                self.unacked_key,
                HOLDERS_KEY,
                *keys,
                time.time(),
                worker_id(),
                *record,
            )
        else:
            self._sent = "bell"
            bells = [taking.bell_key(q) for q in queues]
            wait = self.brpop_timeout if timeout is None else timeout
            connection.send_command("BRPOP", *bells, wait or 0)
        return None

    def _brpop_read(self, **options: Any) -> bool:
        try:
            if self._sent == "brpop":
                return bool(super()._brpop_read(**options))
            return self._take_read(**options)
        except (Empty, *self._broken_link_errors):
            raise
        except Exception as exc:
            # The item is off its list already: dropping it here is final.
            log.error(
                "event=message_refused reason=%r error=%r",
                "queue item is not a kombu envelope (JSON)",
                f"{type(exc).__name__}: {exc}",
            )
            task_rejected.send(sender=self, message=None, exc=exc)
            return True

    def _take_read(self, **options: Any) -> bool:
        """Read the reply of :meth:`_brpop_start`: a bell (wake: take next) or a take
        (deliver what it took; take again at once if it found something)."""
        connection = self.client.connection
        try:
            try:
                reply = self.client.parse_response(
                    connection, "BRPOP" if self._sent == "bell" else "EVAL", **options
                )
            except self.connection_errors:
                connection.disconnect()  # the next poll reconnects
                raise
            except Exception as exc:
                if self._sent == "take" and redis_full.is_redis_full(exc):
                    return self._take_on_full_redis()
                raise
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()
        if self._sent == "bell":
            self._take_next = True  # rang, or the wait timed out: look once
            raise Empty()
        if not reply:
            self._take_next = False
            raise Empty()
        self._take_next = True
        key, item, recorded = reply
        dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(dest)
        raw_message = json_loads(bytes_to_str(item))
        self._recorded_by_take = bool(recorded)
        try:
            self.connection._deliver(raw_message, dest)
        finally:
            self._recorded_by_take = False
        return True

    def _forget_taken(self, raw_message: Any) -> None:
        """Drop the record the take made of a message refused before kombu knew it (if
        Redis is away, the visibility timeout brings it back, to be refused again)."""
        try:
            self.qos._release(raw_message["properties"]["delivery_tag"])
        except Exception as exc:
            log.warning("event=refused_record_kept error=%r", str(exc))

    def _take_on_full_redis(self) -> bool:
        """Redis refused the take for memory (nothing was moved): pop the message the
        old way, so that the delivery refuses it for memory as before (a chunk recorded
        failed, the queue drains, memory comes back)."""
        self._take_next = True
        queues = list(self.active_queues)
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                for queue in queues:
                    item = client.rpop(self._q_for_pri(queue, pri))
                    if item is not None:
                        self.connection._deliver(json_loads(bytes_to_str(item)), queue)
                        return True
        raise Empty()

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """kombu's publish, with a token on the queue's bell (:mod:`tasks.guards.taking`)
        in the same transaction: a refused publish (a full Redis) rings nothing."""
        batch = kwargs.get("_publish_batch")
        if batch is not None or not self._takes_atomically:
            super()._put(queue, message, **kwargs)
            if batch is not None and self._takes_atomically:
                taking.ring(batch, queue)
            return
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        with self.conn_or_acquire() as client, client.pipeline(transaction=True) as pipe:
            pipe.lpush(key, dumps(message))
            if self._expires and queue in self._expires:
                for pri in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, pri), self._expires[queue])
            taking.ring(pipe, queue)
            pipe.execute()

    def _do_restore_message(
        self, payload: Any, exchange: str, routing_key: str, pipe: Any, leftmost: bool = False
    ) -> None:
        """kombu's restore (a reject, a reclaim, the visibility timeout), ringing the bell
        of each queue the message goes back to."""
        super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)
        if self._takes_atomically:
            for queue in self._lookup(exchange, routing_key):
                taking.ring(pipe, queue)

    def basic_consume(
        self,
        queue: str,
        no_ack: bool,
        callback: Callable[[Any], Any],
        consumer_tag: str,
        **kwargs: Any,
    ) -> Any:
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        if no_ack:
            self._no_ack_queues.add(queue)
        self.connection._callbacks[queue] = self._guarded_callback(queue, no_ack, callback)
        return result

    def _refused_for_memory(self, queue: str, raw_message: Any, exc: Exception) -> None:
        """Redis refused to record the message taken (full): a chunk is recorded failed,
        naming Redis memory (``retry`` sends it again once there is room), so the queue
        drains and memory comes back; anything else goes back on its queue."""
        chunk = _chunk_of(raw_message)
        try:
            with self.conn_or_acquire() as client:
                if chunk is not None:
                    job_id, index = chunk
                    error = redis_full.reason("taking the chunk from its queue", job_id)
                    ttl_s = jobstore.ttl_of(client, job_id, self.result_ttl_s)
                    jobstore.mark_failed(client, job_id, index, error, ttl_s=ttl_s)
                    redis_full.stop_window(client, jobstore.PREFIX + job_id, job_id)
                else:
                    priority = self._get_message_priority(raw_message, reverse=False)
                    key = self._q_for_pri(queue, priority)
                    redis_full.give_back(client, key, dumps(raw_message))
        except Exception as error:  # nothing more can be done for it: say so loudly
            log.critical(
                "event=message_lost queue=%s reason=%r error=%r item=%s",
                queue,
                "Redis is out of memory and refused even the record of the chunk",
                str(error),
                _excerpt(raw_message),
            )
            return
        log.error(
            "event=redis_full queue=%s step=%r action=%r chunk=%s pause_s=%.0f error=%r",
            queue,
            "taking a message",
            "chunk recorded failed" if chunk else "put back on its queue",
            f"{chunk[0]}.{chunk[1]}" if chunk else "-",
            FULL_PAUSE_S,
            str(exc),
        )
        if chunk is None:
            time.sleep(FULL_PAUSE_S)  # the same message comes next: not in a hot loop

    def _guarded_callback(
        self, queue: str, no_ack: bool, callback: Callable[[Any], Any]
    ) -> Callable[[Any], Any]:
        """kombu's per-queue delivery callback, with every failure a refusal, not a crash."""

        def deliver(raw_message: Any) -> Any:
            try:
                message = self.Message(raw_message, channel=self)
                if no_ack:
                    pass
                elif self._recorded_by_take:  # in Redis already: only remember it here
                    virtual.QoS.append(self.qos, message, message.delivery_tag)
                else:
                    self.qos.append(message, message.delivery_tag)
            except self._broken_link_errors:
                if not no_ack:  # BRPOP took it; nothing in Redis holds it now
                    STRANDED.keep(queue, raw_message)
                raise
            except Exception as exc:
                if redis_full.is_redis_full(exc):
                    return self._refused_for_memory(queue, raw_message, exc)
                if self._recorded_by_take:  # refused for good: held by no one
                    self._forget_taken(raw_message)
                log.error(
                    "event=message_refused queue=%s reason=%r error=%r item=%s",
                    queue,
                    "malformed kombu envelope",
                    f"{type(exc).__name__}: {exc}",
                    _excerpt(raw_message),
                )
                task_rejected.send(sender=self, message=None, exc=exc)
                return None
            try:
                # Decoded here, with the app's accept list (kombu sets the consumer's own
                # only later), so an undecodable body is refused and counted like the rest.
                message._decoded_cache = loads(
                    message.body, message.content_type, message.content_encoding, accept=ACCEPT
                )
            except ContentDisallowed:
                pass  # pickle, YAML: Celery refuses these itself, naming the content type
            except Exception as exc:
                log.error(
                    "event=message_refused queue=%s reason=%r error=%r headers=%s",
                    queue,
                    "the body does not decode",
                    f"{type(exc).__name__}: {exc}",
                    _excerpt(getattr(message, "headers", None)),
                )
                if not no_ack:
                    message.reject(requeue=False)
                task_rejected.send(sender=self, message=message, exc=exc)
                return None
            try:
                return callback(message)
            except self._broken_link_errors:
                raise
            except Exception as exc:
                log.error(
                    "event=message_refused queue=%s reason=%r error=%r headers=%s",
                    queue,
                    "the worker could not handle the message",
                    f"{type(exc).__name__}: {exc}",
                    _excerpt(getattr(message, "headers", None)),
                )
                if not no_ack and not message.acknowledged:
                    message.reject(requeue=False)  # drop it from the unacked index
                task_rejected.send(sender=self, message=message, exc=exc)
                return None

        return deliver


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):  # type: ignore[misc]
    """kombu's Sentinel channel with the same refusal of undecodable items."""

    from_transport_options = (
        *kombu_redis.SentinelChannel.from_transport_options,
        "result_ttl_s",
    )


class SentinelTransport(kombu_redis.SentinelTransport):  # type: ignore[misc]
    """kombu's Redis Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel
