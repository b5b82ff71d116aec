"""producers.pidfiles: a pid file naming a live process is never replaced; one whose
process is gone (or whose pid was reused) is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from producers import pidfiles
from producers.errors import FleetError


def test_a_live_process_keeps_its_pid_file(tmp_path: Path):
    me = psutil.Process()
    pidfiles.record(tmp_path, "worker1", me.pid)
    before = pidfiles.path(tmp_path, "worker1").read_text()
    with pytest.raises(FleetError, match="worker1 is already running"):
        pidfiles.record(tmp_path, "worker1", 1)
    assert pidfiles.path(tmp_path, "worker1").read_text() == before
    assert set(pidfiles.live(tmp_path)) == {"worker1"}


def test_a_dead_or_reused_pid_file_is_replaced(tmp_path: Path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pidfiles.path(tmp_path, "worker1").write_text(f"{gone.pid} 1.0")
    me = psutil.Process()
    pidfiles.path(tmp_path, "worker2").write_text(f"{me.pid} {me.create_time() - 100!r}")
    assert pidfiles.live(tmp_path) == {}
    pidfiles.record(tmp_path, "worker1", me.pid)
    pidfiles.record(tmp_path, "worker2", me.pid)
    assert set(pidfiles.live(tmp_path)) == {"worker1", "worker2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker1.pid", "worker2.pid"]
