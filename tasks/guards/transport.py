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
trace setup would raise on are refused one step later, by ``tasks.guards.request``.
Bodies are still decoded only by kombu's serializer registry with the app's
``accept_content`` (msgpack, JSON), so pickle and YAML are refused before anything is
decoded. ``celeryconfig`` selects this transport
for ``redis://`` and ``rediss://`` URLs.

Taking a message records it with its holder in the same step (``tasks.guards.taking``);
where kombu's BRPOP still takes, a message whose record a broken link kept from Redis
is kept by the process and put back (``tasks.guards.stranded``).

Two more duties: every message taken is recorded with the worker that holds it
(``tasks.guards.holders``, so a dead worker's chunks can be given back at once), and a
message that a full Redis will not let the worker record as taken is never dropped: a
chunk is recorded failed naming Redis memory, anything else goes back on its queue
(``tasks.jobs.redis_full``).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from celery.signals import task_rejected
from kombu.exceptions import ContentDisallowed
from kombu.serialization import loads, prepare_accept_content
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.transport.virtual.base import Empty
from kombu.utils.json import dumps

import celeryconfig
from tasks.contract.logs import event_logger
from tasks.contract.settings import Settings
from tasks.guards.holders import HolderQoS
from tasks.guards.stranded import STRANDED, excerpt
from tasks.guards.taking import TakingChannel
from tasks.jobs import jobstore, redis_full

log = event_logger(__name__)

#: Content types a body may have (never pickle): the app's own list.
ACCEPT = prepare_accept_content(celeryconfig.accept_content)
#: Seconds a worker waits after Redis refused a message it took for memory.
FULL_PAUSE_S = 2.0


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


class Channel(TakingChannel):
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

    def _brpop_start(self, timeout: Any = None) -> Any:
        if len(STRANDED):
            try:
                STRANDED.give_back(self)
            except self._broken_link_errors as exc:  # still down: the next poll tries
                log.debug("event=give_back_deferred error=%r", str(exc))
        return super()._brpop_start(timeout)

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return bool(super()._brpop_read(**options))
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

    def basic_consume(
        self,
        queue: str,
        no_ack: bool,
        callback: Callable[[Any], Any],
        consumer_tag: str,
        **kwargs: Any,
    ) -> Any:
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
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
                excerpt(raw_message),
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
                    excerpt(raw_message),
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
                    excerpt(getattr(message, "headers", None)),
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
                    excerpt(getattr(message, "headers", None)),
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
