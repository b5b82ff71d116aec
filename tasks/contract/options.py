"""Per-job embedding options: what a job asks of the vectors beyond the model.

One frozen :class:`EmbedOptions` travels everywhere a job goes: in each chunk message's
``options`` map (flat, only the fields that differ from the defaults: :meth:`to_wire`),
in the job record (so ``retry`` sends the same), and in a dataset job's spec. Producers
check a job's options against what the fleet publishes of the model
(:func:`check_for_model`, from ``tasks.contract.catalog``) before anything is queued;
workers check the wire form again (:meth:`EmbedOptions.from_wire`).

- ``prompt_name`` / ``prompt``: a prompt the model declares (models.json ``prompts``,
  or its folder's config_sentence_transformers.json), or a literal text, put before
  each input as sentence-transformers' ``encode(prompt_name=...)`` does; it counts
  toward the model's token window and keys the embedding cache.
- ``dimensions``: the first N dimensions, re-normalized when the model normalizes
  (``tasks.contract.vectors.truncate_dimensions``), applied after the embedding cache.
- ``quantize``: ``int8`` | ``uint8`` | ``binary`` | ``ubinary``
  (``tasks.contract.vectors.quantize``; int8 ranges: ``tasks.jobs.quant_ranges``),
  applied last.
- ``long_text``: ``truncate`` (None, the default: the first window of tokens, as ever)
  | ``mean`` (the text cut into windows of the model's token window overlapping by
  ``window_overlap`` tokens, default :data:`DEFAULT_WINDOW_OVERLAP`; the row's vector is
  the token-weighted mean of its windows' vectors: ``workers.serving.long_text``)
  | ``windows`` (one row per window, with ``row``, ``window``, ``char_start``,
  ``char_end`` and ``tokens``: a part row in dataset jobs; in list jobs the vectors in
  input order, windows in order, with a ``row`` index array beside them). Both cut texts
  with the model's own tokenizer: a model whose type has none (a remote endpoint) is
  refused (:func:`no_windows_reason`; producers know it from the fact ``windows`` the
  workers publish).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from tasks.contract.errors import InvalidRequest, UsageError
from tasks.contract.vectors import QUANTIZE_DTYPES

#: Characters a literal prompt may hold.
MAX_PROMPT_CHARS = 2000
#: What ``long_text`` may be (``truncate`` travels as None: today's behaviour).
LONG_TEXT_MODES = ("truncate", "mean", "windows")
#: Tokens two neighbouring windows share under ``long_text=mean``.
DEFAULT_WINDOW_OVERLAP = 32


@dataclass(frozen=True)
class EmbedOptions:
    """A job's embedding options (None: the model's default)."""

    #: The name of a prompt the model declares (None: its default prompt, if any).
    prompt_name: str | None = None
    #: A literal prompt text ("" for none, overriding a default prompt).
    prompt: str | None = None
    #: Keep the first N dimensions (Matryoshka), re-normalized when the model normalizes.
    dimensions: int | None = None
    #: Output precision: int8 | uint8 | binary | ubinary (None: float32).
    quantize: str | None = None
    #: Long texts: None (truncate) | "mean" (token-weighted mean over windows) |
    #: "windows" (a row per window).
    long_text: str | None = None
    #: Tokens shared by neighbouring windows (None: :data:`DEFAULT_WINDOW_OVERLAP`).
    window_overlap: int | None = None

    @property
    def overlap(self) -> int:
        """The window overlap in tokens this job uses."""
        return DEFAULT_WINDOW_OVERLAP if self.window_overlap is None else self.window_overlap

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names a chunk message may carry for these options."""
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def from_wire(cls, options: dict[str, Any]) -> EmbedOptions:
        """The options a chunk message (or job record) carries; :class:`InvalidRequest`
        naming the option when one holds a bad value."""
        dimensions = options.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions <= 0
        ):
            raise InvalidRequest(
                f"options.dimensions must be a positive integer, got {dimensions!r}"
            )
        prompt_name, prompt = options.get("prompt_name"), options.get("prompt")
        if prompt_name is not None and (not isinstance(prompt_name, str) or not prompt_name):
            raise InvalidRequest(
                f"options.prompt_name must be a prompt's name, got {prompt_name!r}"
            )
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS):
            raise InvalidRequest(
                f"options.prompt must be a text of at most {MAX_PROMPT_CHARS} characters"
            )
        if prompt is not None and prompt_name is not None:
            raise InvalidRequest("options.prompt and prompt_name exclude each other: give one")
        quantize = options.get("quantize")
        if quantize is not None and quantize not in QUANTIZE_DTYPES:
            raise InvalidRequest(
                f"options.quantize must be one of {', '.join(QUANTIZE_DTYPES)}, got {quantize!r}"
            )
        long_text = options.get("long_text")
        if long_text is not None and long_text not in LONG_TEXT_MODES:
            raise InvalidRequest(
                f"options.long_text must be one of {', '.join(LONG_TEXT_MODES)}, got {long_text!r}"
            )
        overlap = options.get("window_overlap")
        if overlap is not None and (
            isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0
        ):
            raise InvalidRequest(
                f"options.window_overlap must be a whole number of tokens >= 0, got {overlap!r}"
            )
        if overlap is not None and long_text in (None, "truncate"):
            raise InvalidRequest(
                f"options.window_overlap={overlap} needs long_text=mean or windows (a "
                f"truncated text has one window)"
            )
        return cls(
            prompt_name=prompt_name,
            prompt=prompt,
            dimensions=dimensions,
            quantize=quantize,
            long_text=None if long_text == "truncate" else long_text,
            window_overlap=overlap,
        )

    @classmethod
    def from_user(cls, **given: Any) -> EmbedOptions:
        """Options as a user gave them (Python keywords, CLI flags, an OpenAI body);
        :class:`UsageError` naming the option when one is wrong."""
        try:
            return cls.from_wire({k: v for k, v in given.items() if v is not None})
        except InvalidRequest as exc:
            raise UsageError(str(exc).replace("options.", "", 1)) from None

    def to_wire(self) -> dict[str, Any]:
        """The fields that differ from the defaults (an empty map for a plain job)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> EmbedOptions:
        return cls.from_wire(json.loads(text)) if text else cls()


def no_windows_reason(model: str, type_name: str) -> str:
    """The one-line refusal of ``long_text=mean|windows`` for a model whose type cannot
    cut windows (it holds no Hugging Face tokenizer)."""
    return (
        f"long_text=mean and windows cut texts into token windows with the model's own "
        f"tokenizer; model {model!r} (type {type_name}) has none: use long_text=truncate"
    )


def check_for_model(options: EmbedOptions, model: str, facts: dict[str, Any]) -> None:
    """Refuse ``options`` that ``model`` cannot honour, with one line naming why.

    ``facts`` is what the fleet publishes of the model (``dimension``,
    ``dimensions_supported``, ``prompts``, ``windows`` and ``type``; missing keys are
    not checked here: the worker checks again with the loaded model).
    """
    if options.long_text is not None and facts.get("windows") is False:
        raise UsageError(no_windows_reason(model, str(facts.get("type", "?"))))
    prompts = facts.get("prompts")
    if options.prompt_name is not None and isinstance(prompts, dict):
        if options.prompt_name not in prompts:
            known = ", ".join(sorted(prompts)) or "none"
            raise UsageError(
                f"model {model!r} has no prompt {options.prompt_name!r}; its prompts: {known}"
            )
    if options.dimensions is not None:
        dim = facts.get("dimension")
        if isinstance(dim, int) and options.dimensions > dim:
            raise UsageError(
                f"dimensions={options.dimensions} is larger than model {model!r}'s dimension {dim}"
            )
        supported = facts.get("dimensions_supported")
        if supported and options.dimensions not in supported and options.dimensions != dim:
            raise UsageError(
                f"dimensions={options.dimensions} is not a size model {model!r} was trained "
                f"for; dimensions_supported: {sorted(supported)}"
            )
