"""Flower's settings file: chunk kwargs shown model first, other tasks untouched."""

from __future__ import annotations

from types import SimpleNamespace

from producers.flowerconfig import format_task


def test_chunk_kwargs_are_shown_model_first():
    # the kwargsrepr producers.client gives every chunk
    task = SimpleNamespace(
        name="embedfleet.embed_chunk",
        kwargs="{'job_id': 'ab12', 'index': 3, 'model': 'all-MiniLM-L6-v2', 'texts': <8 texts>}",
    )
    assert format_task(task).kwargs == "model=all-MiniLM-L6-v2 chunk=3 texts=8 job=ab12"


def test_other_tasks_and_unknown_shapes_are_left_alone():
    other = SimpleNamespace(name="proj.add", kwargs="{'model': 'x'}")
    assert format_task(other).kwargs == "{'model': 'x'}"
    odd = SimpleNamespace(name="embedfleet.embed_chunk", kwargs="{'job_id': 'ab12'}")
    assert format_task(odd).kwargs == "{'job_id': 'ab12'}"
