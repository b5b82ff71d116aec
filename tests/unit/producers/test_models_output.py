"""The `embedfleet models` table: measured RAM, how it was measured, remote models."""

from producers.output import models_text


def test_the_models_table_says_remote_and_how_each_figure_was_measured():
    rows = [{"worker": "w", "models": [
        {"name": "r", "loaded": True, "ram_gb_config": 0.1, "ram_gb_measured": None,
         "ram_method": "remote", "hits": 1, "last_used": None},
        {"name": "t", "loaded": True, "ram_gb_config": 0.1, "ram_gb_measured": 0.085,
         "ram_method": "tensors", "hits": 1, "last_used": None},
    ]}]  # fmt: skip
    lines = models_text(rows).splitlines()
    assert lines[2].split()[:5] == ["r", "yes", "0.10", "remote", "remote"]
    assert lines[3].split()[:5] == ["t", "yes", "0.10", "0.085", "tensors"]
