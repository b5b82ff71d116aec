"""``usage.prompt_tokens`` of an embeddings response.

Counted as the producers count: the byte estimate of ``tasks.contract.chunking``
(UTF-8 bytes / 4 + 2 special tokens, capped at the window). The gateway loads no
tokenizer (it never loads any part of a model).
"""

from __future__ import annotations

from typing import Any

from tasks.contract.chunking import estimate_tokens


def count_tokens(client: Any, model: str, texts: list[str]) -> int:
    """Tokens ``model`` sees for ``texts``."""
    del client, model  # the estimate is the same for every model
    return int(estimate_tokens(texts).sum())
