"""CLI exit codes when the fleet cannot be reached or the environment is wrong."""

import subprocess
import sys

from tests.support import ROOT


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_unreachable_redis_is_one_line_and_exit_2():
    proc = _cli("jobs", EMBEDFLEET_REDIS_URL="redis://127.0.0.1:1/0")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in proc.stderr


def test_bad_memory_limit_stops_the_worker_with_exit_2():
    proc = _cli("worker", EMBEDFLEET_MEMORY_LIMIT_GB="lots")
    assert proc.returncode == 2
    assert "EMBEDFLEET_MEMORY_LIMIT_GB" in proc.stderr and "Traceback" not in proc.stderr


def test_a_deprecated_variable_is_warned_of_in_the_configured_log_format(tmp_path):
    # Given the old download-folder variable and JSON log lines
    import json

    proc = _cli(
        "jobs",
        EMBEDFLEET_MODEL_CACHE=str(tmp_path),
        EMBEDFLEET_LOG_JSON="1",
        EMBEDFLEET_REDIS_URL="http://127.0.0.1:1/0",  # stops right after logging is set up
    )
    assert proc.returncode == 2, proc.stderr
    # Then its warning is one JSON line, written after logging was configured
    (line,) = [ln for ln in proc.stderr.splitlines() if "deprecated_variable" in ln]
    doc = json.loads(line)
    assert (doc["event"], doc["name"], doc["use"]) == (
        "deprecated_variable",
        "EMBEDFLEET_MODEL_CACHE",
        "EMBEDFLEET_DOWNLOAD_DIR",
    )
    assert doc["logger"] == "tasks.contract.settings" and doc["level"] == "WARNING"
