"""Limits, delivery counting, TLS settings and the task registry, without a broker."""

from __future__ import annotations

import ssl

import pytest

import celeryconfig
from tasks.chunking import DEFAULT_MAX_TEXTS, DEFAULT_MAX_TOKENS, plan_chunks
from tasks.deliveries import Delivery
from tasks.embed import check_deliveries, keep_only_chunk_tasks, naming_model
from tasks.errors import InvalidRequest, PermanentError, TooManyDeliveries
from tasks.routing import EMBED_TASK
from tasks.wire import MAX_CHARS_PER_TEXT, MAX_CHUNK_BYTES, validate_request


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
    assert celeryconfig.tls_options("redis://h:6379/0", {}) is None
    options = celeryconfig.tls_options(
        "rediss://h:6380/0",
        {"EMBEDFLEET_REDIS_TLS_CA_CERTS": "/ca.pem", "EMBEDFLEET_REDIS_TLS_CERTFILE": "/c.pem"},
    )
    assert options == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/ca.pem",
        "ssl_certfile": "/c.pem",
    }
    relaxed = celeryconfig.tls_options("rediss://h/0", {"EMBEDFLEET_REDIS_TLS_CERT_REQS": "none"})
    assert relaxed == {"ssl_cert_reqs": ssl.CERT_NONE}
    with pytest.raises(ValueError, match="EMBEDFLEET_REDIS_TLS_CERT_REQS"):
        celeryconfig.tls_options("rediss://h/0", {"EMBEDFLEET_REDIS_TLS_CERT_REQS": "maybe"})


def test_make_app_takes_tls_settings_from_its_url(monkeypatch: pytest.MonkeyPatch):
    from tasks.app import make_app

    monkeypatch.setenv("EMBEDFLEET_REDIS_TLS_CA_CERTS", "/ca.pem")
    tls_app = make_app("rediss://127.0.0.1:6380/0")
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    assert tls_app.conf.broker_use_ssl == tls_app.conf.redis_backend_use_ssl == expected
    assert make_app("redis://127.0.0.1:6379/0").conf.broker_use_ssl is None


def test_only_json_and_msgpack_are_accepted_anywhere():
    assert celeryconfig.accept_content == ["msgpack", "json"]
    assert celeryconfig.result_accept_content == ["msgpack", "json"]
    assert (celeryconfig.task_serializer, celeryconfig.result_serializer) == ("msgpack",) * 2
    assert celeryconfig.event_serializer == "json"
    assert celeryconfig.worker_pool_restarts is False
    assert celeryconfig.broker_transport == "tasks.transport:Transport"
