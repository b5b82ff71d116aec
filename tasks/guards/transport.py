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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.signals import task_rejected
from kombu.exceptions import ContentDisallowed
from kombu.serialization import loads, prepare_accept_content
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual.base import Empty

import celeryconfig
from tasks.guards.holders import HolderQoS

log = logging.getLogger(__name__)

#: Content types a body may have (never pickle): the app's own list.
ACCEPT = prepare_accept_content(celeryconfig.accept_content)
#: Characters of a refused item kept in the log line.
LOGGED_CHARS = 200


def _excerpt(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= LOGGED_CHARS else text[:LOGGED_CHARS] + "..."


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A Redis channel that refuses undecodable envelopes instead of dying on them, and
    records which worker holds each unacked message (``tasks.guards.holders``)."""

    QoS = HolderQoS

    @property
    def _broken_link_errors(self) -> tuple[type[BaseException], ...]:
        # kombu counts KeyError among the Redis transport's connection errors; raised
        # while handling one message it means a malformed message (a header missing),
        # and treating it as a lost connection restores the message and loops forever.
        return tuple(e for e in self.connection_errors if not issubclass(e, LookupError))

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return bool(super()._brpop_read(**options))
        except (Empty, *self._broken_link_errors):
            raise
        except Exception as exc:
            # BRPOP already removed the item from the list: dropping it here is final.
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

    def _guarded_callback(
        self, queue: str, no_ack: bool, callback: Callable[[Any], Any]
    ) -> Callable[[Any], Any]:
        """kombu's per-queue delivery callback, with every failure a refusal, not a crash."""

        def deliver(raw_message: Any) -> Any:
            try:
                message = self.Message(raw_message, channel=self)
                if not no_ack:
                    self.qos.append(message, message.delivery_tag)
            except self._broken_link_errors:
                raise
            except Exception as exc:
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


class SentinelTransport(kombu_redis.SentinelTransport):  # type: ignore[misc]
    """kombu's Redis Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel
