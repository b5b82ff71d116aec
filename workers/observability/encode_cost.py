"""What one text costs a model here: seconds of encoding per text, per model.

The runtime records every encode (texts, seconds); the worker publishes the running
figure in the fleet catalog (``tasks.contract.catalog``), and producers size the chunks of cheap
models from it (``tasks.contract.chunking.budget_for``): a model that encodes a text in
microseconds gets chunks of thousands of texts, so the fleet's fixed cost per chunk
(message, result, marks) stays small next to the model's own work.
"""

from __future__ import annotations

import threading

#: Weight kept by the past at each new encode (a moving average over ~10 chunks).
DECAY = 0.9


class EncodeCosts:
    """Decayed sums of (seconds, texts) per model, and of estimated tokens (the bytes
    estimate of ``tasks.contract.chunking``, as producers count them); thread-safe."""

    def __init__(self) -> None:
        self._sums: dict[str, tuple[float, float]] = {}
        self._tokens: dict[str, tuple[float, float]] = {}  # (seconds, tokens)
        self._dimension: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(
        self,
        model: str,
        texts: int,
        seconds: float,
        tokens: int | None = None,
        dimension: int | None = None,
    ) -> None:
        """Note that ``model`` encoded ``texts`` texts (``tokens`` estimated tokens, into
        ``dimension``-wide vectors) in ``seconds``."""
        if texts <= 0 or seconds < 0:
            return
        with self._lock:
            spent, count = self._sums.get(model, (0.0, 0.0))
            self._sums[model] = (spent * DECAY + seconds, count * DECAY + texts)
            if tokens:
                spent, count = self._tokens.get(model, (0.0, 0.0))
                self._tokens[model] = (spent * DECAY + seconds, count * DECAY + tokens)
            if dimension:
                self._dimension[model] = dimension

    def stats(self) -> dict[str, dict[str, float]]:
        """model -> ``seconds_per_text``, ``seconds_per_token`` and ``encoded_dimension`` (what
        is known so far), published in the fleet catalog for producers' estimates."""
        with self._lock:
            out: dict[str, dict[str, float]] = {}
            for model, (spent, count) in self._sums.items():
                if not count:
                    continue
                entry = {"seconds_per_text": spent / count}
                t_spent, t_count = self._tokens.get(model, (0.0, 0.0))
                if t_count:
                    entry["seconds_per_token"] = t_spent / t_count
                if model in self._dimension:
                    entry["encoded_dimension"] = self._dimension[model]
                out[model] = entry
            return out

    def seconds_per_text(self, model: str) -> float | None:
        """The running cost of one text, or None before the first encode."""
        with self._lock:
            spent, count = self._sums.get(model, (0.0, 0.0))
        return spent / count if count else None

    def snapshot(self) -> dict[str, float]:
        """model -> seconds per text, for every model encoded so far."""
        with self._lock:
            return {m: s / n for m, (s, n) in self._sums.items() if n}

    def forget(self, model: str) -> None:
        """Drop a model's figure (its config changed: the old cost says nothing)."""
        with self._lock:
            self._sums.pop(model, None)
            self._tokens.pop(model, None)
            self._dimension.pop(model, None)
