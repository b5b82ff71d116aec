"""``embedfleet demo``: the main job end to end on the embedded default.

Starts a server if none answers, one worker in the background, embeds the sample file
through the queue with a progress bar, writes the vectors, prints a summary, and stops
what it started.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

import producers.local_fleet as fleet
from producers.client import EmbeddingClient
from producers.writers import check_output, write_embeddings
from tasks.contract.spec import read_local_config
from tasks.io.readers import read_texts

#: The sample: descriptions of Debian packages (real text, ~80 tokens each).
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.jsonl"


def run_demo(input_path: str | None, model: str, output: str) -> int:
    out_path = check_output(output)
    texts = read_texts(input_path or SAMPLE)
    client = EmbeddingClient()
    # The demo's worker reads this config: an unreadable one stops it before anything starts.
    read_local_config(client.settings.config_source or "models.json")
    started = fleet.Started(server=fleet.start_server_if_needed())
    try:
        where = "started an embedded server" if started.server else "using the running server"
        print(f"server  {fleet.describe_url()} ({where})", file=sys.stderr)
        name = f"demo-{os.getpid()}"
        proc = fleet.start_worker(name, models=model)
        started.processes.append((name, proc))
        print(
            f"worker  {name} starting (log: {fleet.state_dir() / (name + '.log')})", file=sys.stderr
        )
        fleet.wait_for_workers([name], [proc])
        t0 = time.perf_counter()
        job = client.submit(texts, model=model)
        vectors = job.wait(timeout=1800, progress=True)
        seconds = time.perf_counter() - t0
        write_embeddings(out_path, vectors)
    finally:
        started.stop()
    norms = np.linalg.norm(vectors, axis=1)
    print(f"job        {job.id}")
    print(f"texts      {len(texts)}")
    print(f"model      {model} ({job.record.version})")
    print(f"dimension  {vectors.shape[1]}")
    print(f"chunks     {job.record.total}")
    print(f"seconds    {seconds:.2f} ({len(texts) / seconds:.1f} texts/s, incl. model load)")
    print(f"norms      mean {norms.mean():.3f}")
    print(f"output     {out_path}")
    return 0
