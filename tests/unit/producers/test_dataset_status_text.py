"""What `embedfleet status JOB` prints for a dataset job."""

from __future__ import annotations

from producers.output import dataset_status_text as status_text


def test_status_names_failed_chunks_with_rows_times_and_eta() -> None:
    status = {
        "id": "j1",
        "model": "m",
        "version": "v1",
        "state": "RUNNING",
        "done": 3,
        "total": 6,
        "texts": 60,
        "rows_done": 30,
        "failed": 1,
        "created": 0.0,
        "started": 1.0,
        "finished": None,
        "eta_s": 12.0,
        "input": "in.txt",
        "output": "/out/",
        "errors": [{"chunk": 4, "rows": [40, 49], "error": "InputError: bad row"}],
    }
    text = status_text(status)
    assert "rows     30/60 done, ETA 12 s" in text
    assert "chunk 4 rows 40-49: InputError: bad row" in text
    assert "finished -" in text and "output   /out/" in text
