"""Every option of every `embedfleet` command says what it does (`--help` is the manual)."""

from __future__ import annotations

import argparse

from producers.cli import _parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {"embedfleet": parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
    return found


def test_every_cli_option_has_help_text() -> None:
    missing = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, parser in _commands(_parser()).items()
        for action in parser._actions
        if action.option_strings
        and not isinstance(action, argparse._HelpAction)
        and not (action.help and action.help.strip() and action.help != argparse.SUPPRESS)
    ]
    assert not missing, "options without help text: " + ", ".join(missing)


def test_the_walk_sees_every_command() -> None:
    commands = _commands(_parser())
    assert {"submit", "status", "jobs", "worker", "up"} <= set(commands)
    assert any("--idempotency-key" in a.option_strings for a in commands["submit"]._actions)
