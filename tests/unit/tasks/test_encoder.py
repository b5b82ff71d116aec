"""The chunk tasks encode through the encoder the worker handed their app, never a global."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.app import make_app
from tasks.chunks.embed import encoder_of
from tasks.contract.errors import PermanentError


def test_an_app_without_an_encoder_fails_the_chunk_naming_how_to_start_a_worker() -> None:
    with pytest.raises(PermanentError, match="embedfleet worker"):
        encoder_of(make_app())


def test_the_encoder_is_the_one_handed_to_that_app_only() -> None:
    def encode(model: str, texts: list[str], options: dict[str, Any]) -> tuple[Any, str]:
        return [len(t) for t in texts], "v1"

    mine, other = make_app(), make_app()
    mine.encoder = encode
    assert encoder_of(mine)("m", ["ab"], {}) == ([2], "v1")
    with pytest.raises(PermanentError):
        encoder_of(other)
