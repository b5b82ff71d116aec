"""Model types defined only in the test suite, plugged in by dotted path."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from workers.models.base import BaseEmbeddingModel

#: Texts containing this marker make :class:`HashModel` fail, to test chunk failures.
POISON = "POISON-PILL"


class HashModel(BaseEmbeddingModel):
    """Deterministic 16-d vectors from a text's sha256; refuses poisoned texts."""

    def encode(self, sentences: list[str]) -> np.ndarray:
        for text in sentences:
            if POISON in text:
                raise ValueError(f"cannot embed a text containing {POISON}")
        return np.stack([hash_vector(t) for t in sentences])

    @property
    def dimension(self) -> int:
        return 16


def hash_vector(text: str) -> np.ndarray:
    digest = hashlib.sha256(text.encode("utf-8")).digest()[:16]
    return np.frombuffer(digest, dtype=np.uint8).astype(np.float32) / 255.0


#: Texts containing this marker make :class:`KillerHashModel` SIGKILL its own worker.
KILL_MARKER = "KILL-MY-WORKER"
#: Seconds :class:`SlowHashModel` spends per text (env, read at encode time).
SLOW_ENV = "EMBEDFLEET_TEST_SLOW_S"
#: When set, :class:`SlowHashModel` touches this file on its first encode and then
#: blocks until the process is killed: a worker frozen mid-chunk.
HANG_ENV = "EMBEDFLEET_TEST_HANG_FILE"


class SlowHashModel(HashModel):
    """:class:`HashModel` that takes time (``EMBEDFLEET_TEST_SLOW_S`` s per text), so
    faults land mid-job; with ``EMBEDFLEET_TEST_HANG_FILE`` it freezes mid-chunk."""

    def encode(self, sentences: list[str]) -> np.ndarray:
        hang_file = os.environ.get(HANG_ENV)
        if hang_file:
            Path(hang_file).write_text(str(os.getpid()))
            while True:  # until SIGKILL
                time.sleep(1)
        time.sleep(float(os.environ.get(SLOW_ENV, "0.02")) * len(sentences))
        return super().encode(sentences)


class KillerHashModel(HashModel):
    """:class:`HashModel` that SIGKILLs its own process on a text holding
    :data:`KILL_MARKER`, as the kernel's OOM killer would on a model too big."""

    def encode(self, sentences: list[str]) -> np.ndarray:
        if any(KILL_MARKER in t for t in sentences):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode(sentences)


class TokenizedHashModel(HashModel):
    """:class:`HashModel` whose ``model_path`` folder holds a Hugging Face tokenizer, and
    which imports ``colorsys`` on first use: capabilities declared on the class only."""

    hf_tokenizer = True
    imports = ("colorsys",)


#: Texts ``POISON-WHILE:<path> ...`` fail while ``<path>`` exists (a fixable poison).
POISON_WHILE = "POISON-WHILE:"


class CurablePoisonModel(HashModel):
    """:class:`HashModel` that refuses a text ``POISON-WHILE:<path> ...`` while the file
    ``<path>`` exists: a chunk that fails until the test removes the cause."""

    def encode(self, sentences: list[str]) -> np.ndarray:
        for text in sentences:
            if text.startswith(POISON_WHILE):
                path = Path(text[len(POISON_WHILE) :].split(" ", 1)[0])
                if path.exists():
                    raise ValueError(f"poisoned while {path} exists")
        return super().encode(sentences)


#: Texts ``WAIT-WHILE:<path> ...`` hold their chunk while ``<path>`` exists.
WAIT_WHILE = "WAIT-WHILE:"


class GatedHashModel(HashModel):
    """:class:`HashModel` that holds a chunk with a text ``WAIT-WHILE:<path> ...`` while
    the file ``<path>`` exists, after touching ``<path>.waiting``: a chunk the test
    knows is running, until it lets it go."""

    def encode(self, sentences: list[str]) -> np.ndarray:
        for text in sentences:
            if text.startswith(WAIT_WHILE):
                gate = Path(text[len(WAIT_WHILE) :].split(" ", 1)[0])
                if gate.exists():
                    gate.with_name(gate.name + ".waiting").touch()
                while gate.exists():
                    time.sleep(0.05)
        return super().encode(sentences)


#: Texts starting with this marker get facts about the worker process from
#: :class:`ProcessProbeModel` (vary the rest: the embedding cache keeps vectors).
PROBE = "PROBE-THE-PROCESS"


class ProcessProbeModel(HashModel):
    """:class:`HashModel` whose vector for a text starting with :data:`PROBE` describes its
    worker process: dimension 0 is 1.0 when torch is imported there, dimension 1 torch's
    intra-op threads (0.0 before torch is imported)."""

    def encode(self, sentences: list[str]) -> np.ndarray:
        vectors = super().encode(sentences)
        torch = sys.modules.get("torch")
        for row, text in enumerate(sentences):
            if text.startswith(PROBE):
                vectors[row, :2] = (torch is not None, torch.get_num_threads() if torch else 0)
        return vectors


class TorchProbeModel(ProcessProbeModel):
    """:class:`ProcessProbeModel` of a type that uses torch (declared in ``imports``, as
    the sentence-transformers type declares its library): its load imports torch."""

    imports = ("torch",)
