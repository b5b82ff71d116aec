"""Limits, delivery counting, TLS settings and the task registry, without a broker."""

from __future__ import annotations

import ssl

import pytest

import celeryconfig
from tasks.chunks.embed import check_deliveries, keep_only_chunk_tasks, naming_model
from tasks.contract.chunking import DEFAULT_MAX_TEXTS, DEFAULT_MAX_TOKENS, plan_chunks
from tasks.contract.errors import ConfigError, InvalidRequest, PermanentError, TooManyDeliveries
from tasks.contract.settings import load_settings
from tasks.contract.wire import MAX_CHARS_PER_TEXT, MAX_CHUNK_BYTES, validate_request
from tasks.jobs.deliveries import Delivery
from tasks.routing import EMBED_TASK


def request(texts, options=None):
    return validate_request("job", 0, "m", texts, options)


def test_chunk_bytes_limit_names_the_setting():
    big = "é" * (MAX_CHUNK_BYTES // 2 + 1)  # 2 bytes each in UTF-8
    with pytest.raises(InvalidRequest, match="EMBEDFLEET_MAX_CHUNK_BYTES"):
        request([big])
    assert request(["é" * 1000])[3] == ["é" * 1000]


def test_producer_chunks_stay_far_below_the_chunk_bytes_limit():
    # the worst case of the default plan: every text as long as a text may be, in
    # 4-byte characters (the producer cuts texts at MAX_CHARS_PER_TEXT first)
    texts = ["😀" * MAX_CHARS_PER_TEXT] * 200
    order, bounds = plan_chunks(texts, DEFAULT_MAX_TOKENS, DEFAULT_MAX_TEXTS)
    largest = max(
        sum(len(texts[r].encode()) for r in order[bounds[i] : bounds[i + 1]])
        for i in range(len(bounds) - 1)
    )
    assert largest * 2 < MAX_CHUNK_BYTES


def test_texts_that_are_not_valid_unicode_are_refused():
    with pytest.raises(InvalidRequest, match=r"texts\[1\] is not valid Unicode"):
        request(["fine", "\ud800"])


@pytest.mark.parametrize(
    "options, match",
    [({"version": 5}, "options.version"), ({"normalize": "yes"}, "options.normalize")],
)
def test_option_values_are_typed(options, match):
    with pytest.raises(InvalidRequest, match=match):
        request(["a"], options)


def test_blame_reaching_the_limit_fails_saying_why():
    check_deliveries(Delivery(3, 2.0, 1.0), "j", 4, limit=3)  # two deaths: still runs
    check_deliveries(Delivery(9, 2.99, 0.33), "j", 4, limit=3)  # shared deaths count less
    with pytest.raises(TooManyDeliveries) as info:
        check_deliveries(Delivery(4, 3.0, 1.0), "j", 4, limit=3)
    message = str(info.value)
    assert "chunk 4 of job j was delivered 4 times" in message
    assert "EMBEDFLEET_MAX_DELIVERIES=3" in message


def test_chunk_errors_name_their_model():
    named = naming_model(PermanentError("needs 9 GB, the budget is 4 GB"), "big-model")
    assert str(named) == "model 'big-model': needs 9 GB, the budget is 4 GB"
    assert type(named) is PermanentError
    already = PermanentError("model 'big-model' needs 9 GB")
    assert naming_model(already, "big-model") is already


def test_a_worker_app_runs_the_chunk_task_only():
    from tasks.app import make_app

    worker_app = make_app("redis://127.0.0.1:1/0")
    assert "celery.chord_unlock" in worker_app.tasks
    removed = keep_only_chunk_tasks(worker_app)
    assert "celery.map" in removed and list(worker_app.tasks) == [EMBED_TASK]


def test_tls_options_verify_the_server_by_default():
    assert celeryconfig.tls_options("redis://h:6379/0", load_settings({})) is None
    options = celeryconfig.tls_options(
        "rediss://h:6380/0",
        load_settings(
            {"EMBEDFLEET_REDIS_TLS_CA_CERTS": "/ca.pem", "EMBEDFLEET_REDIS_TLS_CERTFILE": "/c.pem"}
        ),
    )
    assert options == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/ca.pem",
        "ssl_certfile": "/c.pem",
    }
    relaxed = load_settings({"EMBEDFLEET_REDIS_TLS_CERT_REQS": " None "})
    assert celeryconfig.tls_options("rediss://h/0", relaxed) == {"ssl_cert_reqs": ssl.CERT_NONE}
    with pytest.raises(ConfigError, match="^EMBEDFLEET_REDIS_TLS_CERT_REQS='maybe': "):
        load_settings({"EMBEDFLEET_REDIS_TLS_CERT_REQS": "maybe"})


def test_make_app_takes_tls_settings_from_its_url():
    from tasks.app import make_app

    settings = load_settings({"EMBEDFLEET_REDIS_TLS_CA_CERTS": "/ca.pem"})
    tls_app = make_app("rediss://127.0.0.1:6380/0", settings)
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    assert tls_app.conf.broker_use_ssl == tls_app.conf.redis_backend_use_ssl == expected
    assert make_app("redis://127.0.0.1:6379/0", settings).conf.broker_use_ssl is None


def test_an_app_is_configured_from_the_settings_it_was_given():
    # Given settings that differ from the environment's, When an app is built from them
    from tasks.app import make_app

    settings = load_settings({"EMBEDFLEET_RESULT_TTL_S": "77", "EMBEDFLEET_MAX_DELIVERIES": "5"})
    built = make_app(settings=settings)
    # Then its Celery settings and its settings object follow them, not the environment
    assert built.conf.result_expires == 77 and built.settings.max_deliveries == 5
    assert built.conf.broker_url == settings.redis_url


def test_a_sentinel_url_takes_its_master_name_from_the_settings():
    settings = load_settings({"EMBEDFLEET_REDIS_SENTINEL_MASTER": "embedmaster"})
    conf = celeryconfig.url_settings("sentinel://s1:26379;sentinel://s2:26379/0", settings)
    assert conf["broker_transport"] == "tasks.guards.transport:SentinelTransport"
    assert conf["broker_transport_options"]["master_name"] == "embedmaster"
    assert conf["result_backend_transport_options"]["master_name"] == "embedmaster"
    default = celeryconfig.url_settings("sentinel://s1:26379/0", load_settings({}))
    assert default["broker_transport_options"]["master_name"] == "mymaster"


def test_a_pickle_message_is_refused_and_never_unpickled(tmp_path):
    # Given a pickled payload that would create a file when unpickled
    from kombu.exceptions import ContentDisallowed
    from kombu.serialization import dumps, loads, prepare_accept_content

    from tasks.app import make_app
    from tests.fault.malformed import pickle_payload

    app = make_app("redis://127.0.0.1:1/0")
    accept = prepare_accept_content(app.conf.accept_content)  # as the worker's consumer
    marker = tmp_path / "unpickled"
    payload = pickle_payload(marker)
    # When a worker decodes it as a task or a control message (what kombu's consumer
    # does with the app's accept list), it is refused
    with pytest.raises(ContentDisallowed, match="pickle"):
        loads(payload, "application/x-python-serialize", "binary", accept=accept)
    # ... and when a producer reads it back as a chunk result, it is not unpickled either
    with pytest.raises(Exception):  # noqa: B017 (msgpack refuses it: any error will do)
        app.backend.decode(payload)
    assert not marker.exists()
    # while what the fleet itself sends (msgpack tasks and results, JSON events) decodes
    for serializer in (app.conf.task_serializer, app.conf.result_serializer, "json"):
        content_type, encoding, body = dumps({"texts": ["a"]}, serializer=serializer)
        assert loads(body, content_type, encoding, accept=accept) == {"texts": ["a"]}
    assert app.backend.decode(app.backend.encode({"n": 1})) == {"n": 1}


def test_remote_pool_restarts_are_refused():
    # `pool_restart` would import modules named on the wire
    from types import SimpleNamespace

    from celery.worker.control import pool_restart

    from tasks.app import make_app

    state = SimpleNamespace(app=make_app("redis://127.0.0.1:1/0"), consumer=None)
    with pytest.raises(ValueError, match="not enabled"):
        pool_restart(state, modules=["os"], reload=True)


def test_the_broker_uses_the_transport_that_refuses_undecodable_items():
    from tasks.app import make_app
    from tasks.guards.transport import Transport

    with make_app("redis://127.0.0.1:1/0").connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
