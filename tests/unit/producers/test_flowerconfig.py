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


def test_dataset_chunk_kwargs_name_their_rows():
    # the kwargs summary a worker makes of a dataset chunk (tasks.guards.request.summarize)
    from tasks.guards.request import summarize

    kwargs = {"job_id": "cd34", "index": 2, "model": "m"}
    shown = summarize(kwargs, "2048-3071")
    assert shown == "{'job_id': 'cd34', 'index': 2, 'model': 'm', 'rows': '2048-3071'}"
    task = SimpleNamespace(name="embedfleet.embed_range", kwargs=shown)
    assert format_task(task).kwargs == "model=m rows=2048-3071 chunk=2 job=cd34"
    # a forged rows header is not echoed
    assert "'rows': '?'" in summarize(kwargs, "0-1 <script>")


def test_a_list_chunk_result_is_summarized_not_dumped():
    import numpy as np
    from celery.utils.saferepr import saferepr

    from tasks.contract.wire import pack_embeddings
    from tasks.guards.request import summarize_result

    result = pack_embeddings(np.zeros((128, 384), dtype=np.float32), model="m", version="v")
    assert summarize_result(saferepr(result, 1024)) == "<128 x 384 <f4>"
    assert summarize_result("None") == "None"  # a dataset chunk returns nothing
