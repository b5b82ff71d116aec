"""The README's layout section names what the tree holds, and only that: every module of
producers/ (a flat room), every folder of tasks/ and workers/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout() -> dict[str, str]:
    """Top-level folder -> the layout's lines about it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("\n## Layout", 1)[1].split("```", 2)[1]
    rooms: dict[str, str] = {}
    room = ""
    for line in block.splitlines():
        top = re.match(r"^([a-z_]+)/\s", line)
        if top:
            room = top.group(1)
        rooms[room] = rooms.get(room, "") + line + "\n"
    return rooms


def _first_column_names(lines: str, pattern: str) -> set[str]:
    """Names matching ``pattern`` in the lines' first column (before the description)."""
    names: set[str] = set()
    for line in lines.splitlines():
        entry = re.match(r"^  \S", line)  # not a description's continuation line
        column = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0] if entry else ""
        names |= set(re.findall(pattern, column))
    return names


def test_every_producers_module_is_named_and_every_name_exists() -> None:
    lines = _layout()["producers"]
    modules = {p.name for p in (ROOT / "producers").glob("*.py") if p.name != "__init__.py"}
    named = set(re.findall(r"\b([a-z_]+\.py)\b", lines))
    assert sorted(modules - named) == [], "modules the README's layout does not name"
    assert sorted(named - modules) == [], "the README's layout names modules that are gone"


def test_every_folder_of_tasks_and_workers_is_named_and_exists() -> None:
    layout = _layout()
    for room in ("tasks", "workers"):
        folders = {
            p.name
            for p in (ROOT / room).iterdir()
            if p.is_dir() and not p.name.startswith("__") and any(p.glob("*.py"))
        }
        named = _first_column_names(layout[room], r"\b([a-z_]+)/")
        assert sorted(folders ^ named) == [], f"{room}/: layout and tree differ"


def test_the_check_sees_a_missing_module() -> None:
    # the parser finds names in a line's description too, as the layout writes them
    found = set(re.findall(r"\b([a-z_]+\.py)\b", "  a.py   see b.py\n"))
    assert found == {"a.py", "b.py"}
