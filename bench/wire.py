"""Bytes on the wire: what a job's chunk results weigh in Redis vs raw float32.

Runs one job of real texts (embedding cache off) through a real worker, then reads
back, from the server itself:

- every chunk result as stored (``STRLEN`` of its result-backend key), summed, against
  the raw float32 size of the job's vectors (n x dim x 4 bytes): the goal is <= 1.05x;
- the fields of one stored result and their sizes (what the framing holds);
- the results Celery's Redis backend PUBLISHes as it stores them (caught by a pattern
  subscriber of this bench);
- the server's own byte counters over the job (``INFO stats``: total_net_input_bytes,
  total_net_output_bytes), i.e. everything every client sent and received: chunk
  messages, results, progress keys, events, polls.

    .venv/bin/python bench/wire.py [--texts 1000]
"""

from __future__ import annotations

import argparse
from typing import Any

import _fleet


def net_bytes(redis: Any) -> tuple[int, int]:
    stats = redis.info("stats")
    return int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])


def field_sizes(meta: dict[str, Any]) -> str:
    import msgpack

    parts = []
    for key, value in meta.items():
        parts.append(f"{key}={len(msgpack.packb(value, default=str))}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    args = parser.parse_args()
    _fleet.header("wire: chunk result bytes stored in Redis vs raw float32")
    texts = _fleet.load_corpus(args.texts)
    config = _fleet.write_config({_fleet.MODEL: _fleet.model_entry()})
    with _fleet.server(), _fleet.workers(config):
        from producers import EmbeddingClient
        from tasks.jobs.jobstore import chunk_task_id

        client = EmbeddingClient(config_source=str(config))
        _fleet.warm(client, _fleet.MODEL, texts, 1)
        redis = client.redis
        listener = redis.pubsub()
        published: list[int] = []
        listener.psubscribe(**{"celery-task-meta-*": lambda m: published.append(len(m["data"]))})
        thread = listener.run_in_thread(sleep_time=0.01, daemon=True)
        in0, out0 = net_bytes(redis)
        job = client.submit(texts, model=_fleet.MODEL, cache=False)
        vectors = job.wait(timeout=3600)
        in1, out1 = net_bytes(redis)
        thread.stop()
        backend = client.app.backend
        keys = [backend.get_key_for_task(chunk_task_id(job.id, i)) for i in range(job.record.total)]
        stored = sum(int(redis.strlen(k)) for k in keys)
        meta = backend.decode(redis.get(keys[0]))
    raw = vectors.size * 4
    text_bytes = sum(len(t.encode()) for t in texts)
    n, dim = vectors.shape
    print(f"job                 {n} texts x {dim} dims in {job.record.total} chunks")
    print(f"raw float32         {raw:10d} bytes")
    print(
        f"stored results      {stored:10d} bytes  ratio {stored / raw:.4f}  "
        f"({(stored - raw) / job.record.total:.0f} bytes of framing per chunk)"
    )
    print(f"one result holds    {field_sizes(meta)} (msgpack bytes per field)")
    print(
        f"results published   {sum(published):10d} bytes  ratio {sum(published) / raw:.4f} "
        f"({len(published)} messages): Celery's Redis backend PUBLISHes every result it "
        "stores, so a worker uploads each result twice (SET + PUBLISH)"
    )
    print(f"texts (UTF-8)       {text_bytes:10d} bytes")
    print(
        f"server received     {in1 - in0:10d} bytes  ({(in1 - in0) / (raw + text_bytes):.3f}x "
        f"float32 + text): chunk messages, results, progress, events, polls"
    )
    print(
        f"server sent         {out1 - out0 - sum(published):10d} bytes  "
        f"({(out1 - out0 - sum(published)) / (raw + text_bytes):.3f}x float32 + text, this "
        "bench's own subscriber left out): messages to the worker, results to the producer"
    )
    _fleet.footer()


if __name__ == "__main__":
    main()
