"""The README's "reproduce vectors in-process": the seed's entry points, in this process,
on the same config, give the fleet's vectors for the same texts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.integration.conftest import cosine_rows
from tests.support import DEFAULT_MODEL, SAMPLE

pytestmark = pytest.mark.integration


def test_the_seed_entry_points_reproduce_the_fleets_vectors(client, worker):
    texts = [json.loads(line)["text"] for line in SAMPLE.read_text().splitlines()[:64]]
    fleet = client.submit(texts, model=DEFAULT_MODEL, cache=False).wait(timeout=600)

    # What the README shows: the same config, the same wrapper and precision, in-process
    from workers.cache import load_embedding_model
    from workers.models.base import generate_embeddings

    with load_embedding_model(DEFAULT_MODEL) as model:
        local = generate_embeddings(model, texts)

    assert local.shape == fleet.shape and local.dtype == np.float32
    print(f"max abs difference {np.abs(local - fleet).max():.2e}")
    assert cosine_rows(local, fleet).min() >= 0.9999
