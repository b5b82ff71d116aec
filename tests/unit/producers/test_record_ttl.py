"""The settings a client is built with are the ones its writes use: records expire after
its ``result_ttl_s`` and dataset chunks travel at its ``dataset_priority``, whatever this
process's environment says (on the session's real server)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from producers.client import EmbeddingClient
from tasks.contract.settings import load_settings
from tasks.jobs import claims, datasets, jobstore
from tasks.routing import queue_for

#: kombu's separator of a queue's priority lists (``embed.m\x06\x163``: priority 3).
SEP = "\x06\x16"
#: Seconds, far from the default (7 days) and from any other test's.
TTL_S = 4321


@pytest.fixture
def client(redis_server, tmp_path: Path) -> EmbeddingClient:
    """A client whose settings differ from the environment's in TTL and priority only."""
    model = f"ttl-{uuid.uuid4().hex[:8]}"  # in no fleet's catalog: the local config answers
    config = tmp_path / "models.json"
    config.write_text(
        json.dumps({model: {"type": "sentence_transformer", "model_path": "x", "RAM": 0.1}})
    )
    base = load_settings()
    settings = base.model_copy(update={"result_ttl_s": TTL_S, "dataset_priority": 3})
    assert base.result_ttl_s != TTL_S
    made = EmbeddingClient(config_source=str(config), settings=settings)
    made.model = model  # type: ignore[attr-defined]
    yield made
    made.redis.delete(*[queue_for(model) + s for s in ("", *(SEP + p for p in "369"))])


def ttls(redis, keys: list[str]) -> dict[str, int]:
    return {k: int(redis.ttl(k)) for k in keys}


def test_a_list_job_s_records_expire_after_the_client_s_ttl(client):
    # When a client built with its own settings submits (no worker: the chunks wait)
    job = client.submit(["one text", "another text"], client.model)
    redis = client.redis
    # Then the job's record expires after its TTL
    found = ttls(redis, [jobstore.PREFIX + job.id])
    assert all(TTL_S - 60 < t <= TTL_S for t in found.values()), found
    # ... and a delete leaves its tombstone for the same time
    job.delete()
    tombstone = redis.ttl(f"embedfleet:deleted:{job.id}")
    assert TTL_S - 60 < tombstone <= TTL_S


def test_a_dataset_job_s_records_claim_and_chunks_follow_the_client_s_settings(client, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"row {i}\n" for i in range(6)))
    dest = str(tmp_path / "out") + "/"
    # When a dataset job is submitted through that client
    job = client.submit_dataset(str(source), client.model, dest, chunk_rows=2, window=2)
    redis = client.redis
    keys = [datasets.key(job.id, s) for s in ("", "plan", "files", "sent")] + [claims.key(dest)]
    # Then its hash, plan, files, sent bits and the destination's claim expire after its TTL
    found = ttls(redis, keys)
    assert all(TTL_S - 60 < t <= TTL_S for t in found.values()), found
    # ... and its first chunks wait at its priority, not the environment's (9)
    assert redis.llen(queue_for(client.model) + SEP + "3") == 2
    assert redis.llen(queue_for(client.model) + SEP + "9") == 0
    job.delete()
