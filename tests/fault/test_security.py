"""Security: jobs over Redis AUTH and over TLS (``rediss://``); remote control takes no
code from the wire; pickle never accepted; ``trust_remote_code`` only when asked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from producers.server import ServerError, TLSFiles
from tests.fault.conftest import HASH, pythonpath, wait_for
from tests.fault.malformed import Unpickled
from tests.plugins import hash_vector
from tests.support import ROOT, run_cli

pytestmark = pytest.mark.fault

PASSWORD = "fault-suite-s3cret"
TEXTS = [f"a secure text {i}" for i in range(12)]
EXPECTED = np.stack([hash_vector(t) for t in TEXTS])
#: redis-py retries failed connections (auth errors included) with backoff by default.
NO_RETRY = Retry(NoBackoff(), 0)
#: A module that leaves a marker when imported: what `pool_restart` could import.
EVIL_MODULE = "from pathlib import Path\nPath({marker!r}).write_text('imported')\n"


@pytest.fixture(scope="module")
def auth_fleet(make_module_fleet, tmp_path_factory):
    """A password-protected server, and a worker that can import ``evil_module``."""
    modules = tmp_path_factory.mktemp("modules")
    marker = modules / "imported"
    (modules / "evil_module.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    fleet = make_module_fleet({"hash-model": HASH}, password=PASSWORD)
    fleet.ready(fleet.worker(PYTHONPATH=pythonpath(modules)))
    return fleet, modules, marker


def test_job_over_redis_auth(auth_fleet):
    auth_fleet, _, _ = auth_fleet
    (worker,) = auth_fleet.workers
    assert f":{PASSWORD}@" in auth_fleet.server.url
    vectors = auth_fleet.client.submit(TEXTS, model="hash-model", max_texts=4).wait(timeout=30)
    np.testing.assert_array_equal(vectors, EXPECTED)
    # without the password, or with a wrong one, the server refuses
    for password in (None, "wrong"):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=auth_fleet.port, password=password, retry=NO_RETRY).ping()
    assert PASSWORD not in worker.log()  # the URL is logged masked


def test_remote_control_takes_no_code_from_the_wire(auth_fleet, tmp_path: Path):
    auth_fleet, modules, imported = auth_fleet
    (worker,) = auth_fleet.workers
    control = auth_fleet.client.app.control
    # pool_restart would import the modules a message names: it is off
    replies = control.broadcast(
        "pool_restart", arguments={"modules": ["evil_module"], "reload": True}, reply=True
    )
    assert replies and "Pool restarts not enabled" in json.dumps(replies)
    # a pickled control message is refused before anything is unpickled
    marker = tmp_path / "unpickled"
    mailbox = control.mailbox
    mailbox.serializer = "pickle"
    try:
        control.broadcast("ping", arguments={"payload": Unpickled(marker)})
    finally:
        mailbox.serializer = "json"
    wait_for(lambda: "content of type pickle" in worker.log(), 30, "the pickle refusal")
    # a reload re-reads the worker's own config source: a path on the wire is ignored
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"other-model": HASH}))
    control.broadcast("reload_models", arguments={"source": str(other)}, reply=True)
    (row,) = auth_fleet.client.models(timeout=1)
    assert row["config_source"] == str(auth_fleet.config)
    assert [m["name"] for m in row["models"]] == ["hash-model"]
    # ... the worker still serves, and nothing was imported or unpickled
    assert control.ping(destination=[worker.node], timeout=2)
    assert not imported.exists() and not marker.exists()
    # (the module does leave its marker when something imports it)
    env = {"PYTHONPATH": pythonpath(modules)}
    subprocess.run([sys.executable, "-c", "import evil_module"], env=env, check=True)
    assert imported.exists()


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSFiles:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make test certificates")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=tmp_path, check=True, capture_output=True)

    run(
        *"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca".split(),
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    run(
        *"req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1".split(),
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        *"x509 -req -days 2 -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial".split(),
        "-extfile",
        "san.cnf",
        "-out",
        "server.crt",
    )
    return TLSFiles(tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "ca.crt")


def test_job_over_tls(make_fleet, tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch):
    ca = {"EMBEDFLEET_REDIS_TLS_CA_CERTS": str(tls_files.ca_file)}
    monkeypatch.setenv("EMBEDFLEET_REDIS_TLS_CA_CERTS", str(tls_files.ca_file))
    try:
        fleet = make_fleet({"hash-model": HASH}, env=ca, tls=tls_files)
    except ServerError as exc:
        pytest.skip(f"this Redis server binary cannot serve TLS: {exc}")
    assert fleet.server.url.startswith("rediss://")
    worker = fleet.worker()
    fleet.ready(worker)
    # a job over TLS, from this process and then read back by the CLI in another
    job = fleet.client.submit(TEXTS, model="hash-model", max_texts=4)
    np.testing.assert_array_equal(job.wait(timeout=30), EXPECTED)
    proc = run_cli("status", job.id, "--json", env={"EMBEDFLEET_REDIS_URL": fleet.server.url, **ca})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "SUCCESS"
    # plain TCP gets nothing; TLS without the CA fails verification (it is required)
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=fleet.port, socket_timeout=2, retry=NO_RETRY).ping()
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis.Redis.from_url(
            fleet.server.url, ssl_cert_reqs="required", socket_timeout=2, retry=NO_RETRY
        ).ping()


def test_trust_remote_code_only_when_the_entry_asks(tmp_path: Path):
    # Given model folders whose config names Python files in the folder, for the two
    # types that load transformers code; loaded by the real wrappers in a subprocess
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fault.remote_code", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = json.loads(proc.stdout.strip().splitlines()[-1])
    # Then the folder's code ran only where the entry said trust_remote_code: true
    assert ran == {
        "sentence_transformer:false": False,
        "sentence_transformer:true": True,
        "bert:false": False,
        "bert:true": True,
    }
