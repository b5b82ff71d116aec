"""A real Flower, started the way `embedfleet up --flower` starts it, on the test server.

Flower learns about tasks from the worker's events, so it must be listening before the
job is sent: the tests first wait until Flower has heard the worker's heartbeat.

The screenshot test writes ``docs/flower.png`` when ``EMBEDFLEET_FLOWER_SCREENSHOT``
names that path (how the picture in the repository was made), else a temporary file.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import producers.local_fleet as fleet
from tasks.io.readers import read_texts
from tasks.routing import DATASET_TASK, EMBED_TASK, queue_for
from tests.conftest import free_port
from tests.support import DEFAULT_MODEL, SAMPLE

pytestmark = pytest.mark.integration

USER, PASSWORD = "fleet", "s3cret-for-tests"
CHROMIUM = Path("/usr/bin/chromium")


class Flower:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, auth: bool = True) -> Any:
        request = urllib.request.Request(self.base + path)
        if auth:
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def poll(self, path: str, ready: Any, timeout: float = 60.0) -> Any:
        """GET ``path`` until ``ready(body)`` is true; returns the last body."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(path)
            if ready(body) or time.monotonic() > deadline:
                return body
            time.sleep(0.2)


@pytest.fixture(scope="module")
def flower(worker):
    port = free_port()
    proc = fleet.start_flower(port, basic_auth=f"{USER}:{PASSWORD}")
    try:
        fleet.wait_for_flower(proc, port)
        api = Flower(port)
        # Flower has its event receiver up once it has heard the worker's heartbeat
        alive = api.poll("/api/workers?status=1", lambda b: b.get(worker.node) is True)
        assert alive.get(worker.node) is True, f"flower never heard {worker.node}: {alive}"
        yield api
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def job(client, flower):
    """A real job of 3 chunks, sent once Flower listens, and finished."""
    job = client.submit(read_texts(SAMPLE)[:24], model=DEFAULT_MODEL, max_texts=8)
    assert job.record.total == 3
    job.wait(timeout=300)
    return job


def chunk_ids(job: Any) -> set[str]:
    return {f"{job.id}.{i}" for i in range(job.record.total)}


def test_flower_api_shows_worker_and_job_chunks_with_model_and_job_id(flower, job, worker):
    # Without credentials the API refuses
    with pytest.raises(urllib.error.HTTPError) as refused:
        flower.get("/api/workers", auth=False)
    assert refused.value.code == 401

    # The worker is listed, consuming its model queue
    workers = flower.get("/api/workers?refresh=1")
    assert worker.node in workers
    queues = {q["name"] for q in workers[worker.node]["active_queues"]}
    assert queue_for(DEFAULT_MODEL) in queues

    # Every chunk of the job is a finished task whose kwargs name the job and the model
    tasks = flower.poll(
        "/api/tasks?limit=1000",
        lambda b: all(b.get(t, {}).get("state") == "SUCCESS" for t in chunk_ids(job)),
    )
    for task_id in chunk_ids(job):
        task = tasks[task_id]
        assert task["state"] == "SUCCESS", task
        assert task["name"] == EMBED_TASK
        assert task["worker"] == worker.node
        assert job.id in task["kwargs"] and DEFAULT_MODEL in task["kwargs"]
        assert "texts>" in task["kwargs"]  # the texts themselves are not in events
        assert task["runtime"] > 0
        # the result is a summary, not a dump of the vector bytes
        assert re.fullmatch(r"<8 x 384 <f4>", str(task["result"])), task["result"]


def test_flower_shows_a_dataset_chunk_by_its_rows(flower, client, tmp_path):
    # Given a dataset job of 20 rows in 2 chunks
    (tmp_path / "in.txt").write_text("\n".join(read_texts(SAMPLE)[:20]) + "\n")
    job = client.submit_dataset(
        str(tmp_path / "in.txt"), DEFAULT_MODEL, str(tmp_path / "out") + "/", chunk_rows=10
    )
    job.wait(timeout=300)
    # Then Flower lists each chunk with its model and the rows it holds
    ids = {f"{job.id}.{i}": i for i in range(2)}
    # (Flower fills a task from its received and succeeded events, which may come apart)
    tasks = flower.poll(
        "/api/tasks?limit=1000",
        lambda b: all(
            b.get(t, {}).get("state") == "SUCCESS" and b[t].get("name") and b[t].get("kwargs")
            for t in ids
        ),
    )
    for task_id, index in ids.items():
        task = tasks[task_id]
        assert task["name"] == DATASET_TASK
        first = 10 * index
        assert f"'rows': '{first}-{first + 9}'" in task["kwargs"], task["kwargs"]
        assert job.id in task["kwargs"] and DEFAULT_MODEL in task["kwargs"]


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium for the screenshot (apt-get install -y chromium)",
)
def test_flower_dashboard_screenshot_shows_the_job(flower, job, tmp_path):
    target = Path(os.environ.get("EMBEDFLEET_FLOWER_SCREENSHOT") or tmp_path / "flower.png")
    url = flower.base.replace("http://", f"http://{USER}:{PASSWORD}@") + "/tasks"
    # The task list is filled by JavaScript: the rendered DOM must hold the job's chunks
    dom = chromium(tmp_path, "--dump-dom", url)
    assert all(task_id in dom for task_id in chunk_ids(job)), dom[-2000:]
    assert f"model={DEFAULT_MODEL} chunk=0 texts=8 job={job.id}" in dom  # flowerconfig.py
    # and the same page, rendered, is the picture
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", url)
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1400, 900)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, target)


def chromium(tmp_path: Path, action: str, url: str) -> str:
    """Run headless Chromium once; returns its stdout (the DOM for --dump-dom)."""
    proc = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1400,900",
            "--virtual-time-budget=8000",  # let the page's AJAX calls finish
            action,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
