"""The job key (tasks/contract/signing.py) and where workers may read and write
(tasks/io/data_roots.py), without a server."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from tasks.contract import signing
from tasks.contract.errors import ConfigError, PathRefused
from tasks.contract.settings import load_settings
from tasks.io import data_roots


def fresh_key(state: Path) -> bytes:
    """The key file's key as a new process would read it (no per-process cache)."""
    return signing._key_file(state)


def test_the_key_file_is_made_0600_on_first_use_and_reused(tmp_path: Path):
    state = tmp_path / "state"
    first = fresh_key(state)
    path = signing.key_path(state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 2 * signing.KEY_BYTES
    assert fresh_key(state) == first  # reused, not replaced
    assert [p.name for p in state.iterdir()] == [signing.KEY_FILE]  # no temporary left


def _read_key(state: str) -> bytes:
    return signing._key_file(Path(state))


def test_processes_racing_for_a_new_key_all_get_the_same_one(tmp_path: Path):
    for attempt in range(5):
        state = tmp_path / f"state{attempt}"
        with multiprocessing.get_context("fork").Pool(8) as pool:
            keys = pool.map(_read_key, [str(state)] * 16)
        assert len(set(keys)) == 1 and keys[0] == fresh_key(state)


def test_the_variable_wins_over_the_file_and_is_never_shown(tmp_path: Path):
    settings = load_settings(
        {"EMBEDFLEET_JOB_KEY": "k" * 32, "EMBEDFLEET_STATE_DIR": str(tmp_path / "s")}
    )
    assert signing.key_of(settings) == b"k" * 32
    assert not (tmp_path / "s").exists()  # no file made when the variable is set
    assert "k" * 32 not in repr(settings)
    with pytest.raises(ConfigError) as caught:
        load_settings({"EMBEDFLEET_JOB_KEY": "short-secret"})
    assert "short-secret" not in str(caught.value) and "16 characters" in str(caught.value)


def test_an_unwritable_state_folder_is_one_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as caught:
        fresh_key(blocker / "state")
    assert "EMBEDFLEET_JOB_KEY" in str(caught.value) and "\n" not in str(caught.value)


def test_a_signature_covers_every_signed_field():
    fields = signing.job_fields("j", "m", "v1", "", 10, 1, '{"output": "/a/"}')
    signed = signing.message(fields, signing.digest(b"plan"), signing.files_digest({0: "f"}))
    sig = signing.sign(b"k" * 32, signed)
    assert signing.verify(b"k" * 32, signed, sig)
    assert not signing.verify(b"x" * 32, signed, sig)
    for name, value in fields.items():
        changed = signing.message(
            {**fields, name: f"{value}x"}, signing.digest(b"plan"), signing.files_digest({0: "f"})
        )
        assert not signing.verify(b"k" * 32, changed, sig), name
    for plan, files in ((b"plan2", {0: "f"}), (b"plan", {0: "g"}), (b"plan", {0: "f", 1: "f"})):
        other = signing.message(fields, signing.digest(plan), signing.files_digest(files))
        assert not signing.verify(b"k" * 32, other, sig)


def test_system_folders_are_refused_after_resolving_links(tmp_path: Path):
    link = tmp_path / "data.txt"
    link.symlink_to("/proc/self/environ")
    for url in ("/proc/self/environ", "/sys/kernel/hostname", "/dev/zero", str(link)):
        with pytest.raises(PathRefused, match="under /(proc|sys|dev)"):
            data_roots.check(url, (), "read")
    data_roots.check(str(tmp_path / "ok.txt"), (), "read")  # anywhere else, with no roots
    data_roots.check("/procfs-lookalike/x", (), "read")
    data_roots.check("s3://any/where", (), "write")


def test_data_roots_allow_only_what_is_under_them(tmp_path: Path):
    inside = tmp_path / "in"
    inside.mkdir()
    roots = data_roots.parse(f" {inside} , s3://bucket/ok/ ,")
    assert roots == (os.path.realpath(inside), "s3://bucket/ok/")
    data_roots.check(str(inside / "a" / "b.txt"), roots, "read")
    data_roots.check("s3://bucket/ok/x.jsonl", roots, "read")
    escape = inside / "escape"
    escape.symlink_to(tmp_path)
    for url in (str(tmp_path / "inside-not"), str(escape / "x"), "s3://bucket/other/x"):
        with pytest.raises(PathRefused, match="outside EMBEDFLEET_DATA_ROOTS"):
            data_roots.check(url, roots, "write")
