"""Memory readings against a cgroup fs laid out in a temp dir, and the release loop."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.contract.settings import load_settings
from workers.memory import readings
from workers.memory.readings import (
    GB,
    available_gb,
    memory_budget_gb,
    memory_floor_gb,
    read_cgroup,
    release_until,
)


def _v2(root: Path, limit: str, current: int, inactive: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "memory.max").write_text(f"{limit}\n")
    (root / "memory.current").write_text(f"{current}\n")
    (root / "memory.stat").write_text(f"anon 123\ninactive_file {inactive}\nactive_file 5\n")
    return root


def _v1(root: Path, limit: int, usage: int, inactive: int) -> Path:
    folder = root / "memory"
    folder.mkdir(parents=True)
    (folder / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (folder / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (folder / "memory.stat").write_text(f"cache 1\ntotal_inactive_file {inactive}\n")
    return root


def test_cgroup_v2_available_is_the_limit_less_the_working_set(tmp_path):
    root = _v2(tmp_path, str(4 * GB), current=3 * GB, inactive=1 * GB)
    reading = read_cgroup(root)
    assert reading is not None and reading.version == 2
    assert reading.limit_gb == 4.0
    assert reading.available_gb == pytest.approx(2.0)  # 4 - (3 - 1)


def test_cgroup_v2_max_means_no_limit(tmp_path):
    assert read_cgroup(_v2(tmp_path, "max", current=GB, inactive=0)) is None


def test_cgroup_v1_is_read_and_its_huge_limit_means_none(tmp_path):
    limited = _v1(tmp_path / "a", limit=2 * GB, usage=GB + GB // 2, inactive=GB // 2)
    reading = read_cgroup(limited)
    assert reading is not None and reading.version == 1
    assert reading.available_gb == pytest.approx(1.0)
    assert read_cgroup(_v1(tmp_path / "b", limit=1 << 62, usage=GB, inactive=0)) is None


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert read_cgroup(tmp_path) is None


@pytest.fixture
def host_8gb_3_available(monkeypatch):
    """The host's readings, fixed: 8 GB of RAM, 3 GB available (whatever this host has)."""
    reading = SimpleNamespace(total=8 * GB, available=3 * GB)
    monkeypatch.setattr(readings.psutil, "virtual_memory", lambda: reading)


def test_available_is_the_smaller_of_host_and_container(tmp_path, host_8gb_3_available):
    # no container: the host's available memory
    assert available_gb(tmp_path / "none") == pytest.approx(3.0)
    # a container with less left than the host: the container's
    tiny = _v2(tmp_path / "tiny", str(GB), current=GB - GB // 4, inactive=0)
    assert available_gb(tiny) == pytest.approx(0.25)
    # a container with more left than the host: still the host's
    roomy = _v2(tmp_path / "roomy", str(64 * GB), current=GB, inactive=0)
    assert available_gb(roomy) == pytest.approx(3.0)


def test_without_a_container_budget_and_floor_follow_host_ram(tmp_path, host_8gb_3_available):
    none = tmp_path / "none"
    assert memory_budget_gb(None, none) == pytest.approx(8 * 0.8)  # 80% of RAM
    assert memory_budget_gb(2.0, none) == pytest.approx(2.0)
    assert memory_floor_gb(None, none) == pytest.approx(0.4)  # 5% of 8 GB < 0.5 GB


def test_floor_given_else_the_smaller_of_half_a_gb_and_5_percent(tmp_path):
    small = _v2(tmp_path / "small", str(2 * GB), 0, 0)
    assert memory_floor_gb(None, small) == pytest.approx(0.1)
    assert memory_floor_gb(None, _v2(tmp_path / "big", str(64 * GB), 0, 0)) == pytest.approx(0.5)
    floor = load_settings({"EMBEDFLEET_MEMORY_FLOOR_GB": "1.25"}).memory_floor_gb
    assert memory_floor_gb(floor, small) == 1.25


def test_budget_is_the_smaller_of_the_setting_and_cgroup(tmp_path):
    root = _v2(tmp_path, str(3 * GB), 0, 0)
    assert memory_budget_gb(5.0, root) == pytest.approx(3.0)
    limit = load_settings({"EMBEDFLEET_MEMORY_LIMIT_GB": "1.5"}).memory_limit_gb
    assert memory_budget_gb(limit, root) == pytest.approx(1.5)
    assert memory_budget_gb(None, root) == pytest.approx(3.0)


def test_release_until_retries_until_half_the_model_is_back():
    readings = iter([1.9, 1.6, 1.4, 1.0])
    after = release_until(2.0, expected_gb=1.0, rss=lambda: next(readings), rounds=5)
    assert after == 1.4  # 2.0 - 1.0 / 2 reached on the third round; no fourth
    assert next(readings) == 1.0


def test_release_until_gives_up_after_its_rounds():
    calls = []
    after = release_until(2.0, expected_gb=1.0, rss=lambda: calls.append(1) or 2.0, rounds=3)
    assert after == 2.0 and len(calls) == 3


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan"])
def test_a_bad_memory_limit_is_a_config_error_naming_the_variable(value):
    from workers.errors import ConfigError

    with pytest.raises(ConfigError, match="EMBEDFLEET_MEMORY_LIMIT_GB"):
        load_settings({"EMBEDFLEET_MEMORY_LIMIT_GB": value})
