"""Module singletons stay few: an object is handed what it needs by whoever builds it
(the worker's boot, the CLI's main, a client), not set through ``global``.

The ones left are process-wide knobs the model wrappers read at load, each with a comment
saying why (onnxruntime threads, the precision probe's bar, the S3 download folder).
Lower :data:`MAX_GLOBALS` when one goes; never raise it without such a comment.
"""

from __future__ import annotations

import ast

from tests.unit.test_layers import _modules

#: ``global`` statements allowed in the project's packages and celeryconfig.
MAX_GLOBALS = 3


def global_statements() -> list[str]:
    """``path:line names`` of every ``global`` statement in the project's modules."""
    found = []
    for path in _modules().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                found.append(f"{path.name}:{node.lineno} {', '.join(node.names)}")
    return sorted(found)


def test_global_statements_do_not_grow():
    found = global_statements()
    assert len(found) <= MAX_GLOBALS, (
        f"{len(found)} `global` statements (at most {MAX_GLOBALS}): {found}; hand the "
        "object in from whoever builds it (the worker's boot, the entry point) instead"
    )


def test_the_count_sees_a_global_statement(tmp_path, monkeypatch):
    source = tmp_path / "m.py"
    source.write_text("x = 0\n\ndef f():\n    global x\n    x = 1\n")
    monkeypatch.setattr("tests.unit.test_globals._modules", lambda: {"m": source})
    assert global_statements() == ["m.py:4 x"]
