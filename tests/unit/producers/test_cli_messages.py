"""Item 5 of issue 14 (the CLI's part): one line and exit 2 for a URL that is not Redis
and for an output path that cannot be written, checked before anything is queued and
never taken for Redis being down."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.jobs.redis_retry import retry_while_unreachable
from tests.support import run_cli

#: Nothing listens here: a command that reached for Redis would say "cannot reach Redis".
CLOSED = {"EMBEDFLEET_REDIS_URL": "redis://127.0.0.1:1/0"}


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/0", "https://redis.example/0", "127.0.0.1:6379", "mysql://x"]
)
def test_a_url_that_is_not_redis_is_one_line_and_exit_2(url: str):
    for argv in (["jobs"], ["submit", "--model", "m", "--text", "a"], ["worker"]):
        proc = run_cli(*argv, env={"EMBEDFLEET_REDIS_URL": url}, timeout=60)
        assert proc.returncode == 2
        line = one_line(proc.stderr)
        assert "EMBEDFLEET_REDIS_URL must be a Redis URL" in line, line
        assert "redis://127.0.0.1:6379/0" in line  # an example of a right one


def unwritable_paths(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    a_dir = tmp_path / "out.npy"
    a_dir.mkdir()
    return {
        "under a file": a_file / "out.npy",
        "a directory": a_dir,
        "read-only filesystem": Path("/proc/embedfleet-out.npy"),
    }


@pytest.mark.parametrize("case", ["under a file", "a directory", "read-only filesystem"])
def test_an_unwritable_output_is_refused_before_the_job_is_queued(tmp_path: Path, case: str):
    out = unwritable_paths(tmp_path)[case]
    for argv in (
        ["submit", "--model", "m", "--text", "a", "--output", str(out)],
        ["result", "some-job", "--output", str(out)],
    ):
        proc = run_cli(*argv, env=CLOSED, timeout=60)
        assert proc.returncode == 2
        line = one_line(proc.stderr)
        assert str(out) in line and "Redis" not in line, line


def test_file_errors_are_not_retried_as_redis_being_unreachable():
    calls = []

    def write() -> None:
        calls.append(1)
        raise PermissionError(13, "Permission denied", "/out.npy")

    with pytest.raises(PermissionError):
        retry_while_unreachable(write, deadline_s=30)
    assert len(calls) == 1  # raised at once, not retried for 30 s

    def refused() -> None:
        calls.append(1)
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(ConnectionRefusedError):
        retry_while_unreachable(refused, deadline_s=0.5)
    assert len(calls) > 2  # a refused socket is retried
