"""A job's embedding options on the producer side: checked before anything is queued,
recorded with the job, sent with every chunk (``tasks.contract.options``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from redis.exceptions import RedisError

from producers.job import JobClient
from tasks.contract import catalog as fleet_catalog
from tasks.contract.errors import UsageError
from tasks.contract.options import (
    DEFAULT_WINDOW_OVERLAP,
    LONG_TEXT_MODES,
    EmbedOptions,
    check_for_model,
)
from tasks.contract.spec import read_local_config
from tasks.contract.vectors import QUANTIZE_DTYPES
from tasks.jobs import jobstore
from tasks.jobs.redis_retry import retry_while_unreachable

#: Field of the job hash (``tasks.jobs.jobstore``) holding the options as JSON.
RECORD_FIELD = "embed_options"


def model_facts(client: JobClient, model: str) -> dict[str, Any]:
    """What the fleet publishes of ``model`` (a resolved model, not an alias): from the
    catalog, else from the client's local config; empty when neither knows it."""
    if client.config_source is None:
        try:
            served = fleet_catalog.read(client.redis).models.get(model)
        except RedisError:
            served = None
        if served is not None:
            return {**served.facts, "type": served.type}
    local = client.config_source or client.settings.config_source
    if not local:
        return {}
    spec = read_local_config(local).get(model)
    return fleet_catalog.model_facts(spec) if spec is not None else {}


def options_for(client: JobClient, model: str, **given: Any) -> EmbedOptions:
    """The :class:`EmbedOptions` of a job for ``model`` from the user's keywords;
    :class:`UsageError` (one line) when a value is wrong or the model cannot honour it."""
    options = EmbedOptions.from_user(**given)
    if options.to_wire():
        check_for_model(options, model, model_facts(client, model))
    return options


def for_batch(
    client: JobClient, model: str, options: EmbedOptions, dimensions: int
) -> EmbedOptions:
    """``options`` with the ``body.dimensions`` an OpenAI batch file asks for; refused when
    the job's own ``dimensions`` says otherwise."""
    if options.dimensions not in (None, dimensions):
        raise UsageError(
            f"the batch's requests ask for dimensions {dimensions}, the job for "
            f"{options.dimensions}"
        )
    merged = replace(options, dimensions=dimensions)
    check_for_model(merged, model, model_facts(client, model))
    return merged


def record(client: JobClient, job_id: str, options: EmbedOptions) -> None:
    """Keep ``options`` with the job, so a retry sends the same."""
    if options.to_wire():
        retry_while_unreachable(
            lambda: client.redis.hset(jobstore.PREFIX + job_id, RECORD_FIELD, options.to_json())
        )


def recorded(redis: Any, job_id: str) -> EmbedOptions:
    """The options recorded with a job (the defaults when none were)."""
    return EmbedOptions.from_json(redis.hget(jobstore.PREFIX + job_id, RECORD_FIELD))


def add_arguments(parser: Any) -> None:
    """The embedding-option flags of ``embedfleet submit``."""
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt-name", help="a prompt the model declares (e5: query, passage)")
    prompt.add_argument("--prompt", help="a literal prompt put before each text")
    parser.add_argument(
        "--quantize",
        choices=sorted(QUANTIZE_DTYPES),
        help="output precision (int8/uint8 ranges fixed per model version)",
    )
    parser.add_argument(
        "--dimensions",
        type=int,
        help="keep the first N dimensions (re-normalized when the model normalizes)",
    )
    parser.add_argument(
        "--long-text",
        choices=LONG_TEXT_MODES,
        help="texts past the model's token window: truncate (default), mean (the "
        "token-weighted mean of overlapping windows, one row per text) or windows (one "
        "row per window: row, window, char_start, char_end, tokens; a .npy output gets "
        "NAME.rows.npy, the input row of each vector, beside it)",
    )
    parser.add_argument(
        "--window-overlap",
        type=int,
        help=f"tokens neighbouring windows share under --long-text mean/windows "
        f"(default {DEFAULT_WINDOW_OVERLAP}; at most half the model's window)",
    )


def from_args(args: Any) -> dict[str, Any]:
    """The keywords ``submit`` / ``submit_dataset`` take from the parsed flags."""
    return {
        "dimensions": args.dimensions,
        "prompt_name": args.prompt_name,
        "prompt": args.prompt,
        "quantize": args.quantize,
        "long_text": args.long_text,
        "window_overlap": args.window_overlap,
    }


def quantize(client: Any, vectors: Any, model: str, precision: str) -> np.ndarray:
    """``vectors`` quantized as the fleet quantizes ``model``'s: binary/ubinary need
    nothing more; int8/uint8 use the ranges stored for the model's version and size,
    computed first (one job over the shipped calibration set) when no worker has yet."""
    from tasks.contract.vectors import calibration_ranges
    from tasks.contract.vectors import quantize as apply
    from tasks.jobs import quant_ranges

    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise UsageError(f"vectors must be a 2-D matrix, got shape {matrix.shape}")
    if precision not in QUANTIZE_DTYPES:
        raise UsageError(f"quantize must be one of {', '.join(QUANTIZE_DTYPES)}, got {precision!r}")
    if precision in ("binary", "ubinary"):
        return apply(matrix, precision)
    resolved, _alias, version = client.resolve_model(model, model)
    dims = int(matrix.shape[1])
    ranges = quant_ranges.load(client.redis, resolved, version, dims)
    if ranges is None:
        full = model_facts(client, resolved).get("dimension")
        job = client.submit(
            list(quant_ranges.calibration_texts()),
            model=resolved,
            dimensions=None if dims == full else dims,
        )
        calibration = job.wait(timeout=600)
        if calibration.shape[1] != dims:
            raise UsageError(
                f"model {resolved!r} gives {calibration.shape[1]} dimensions, the vectors "
                f"have {dims}"
            )
        ranges = quant_ranges.store(
            client.redis, resolved, version, calibration_ranges(calibration)
        )
    return apply(matrix, precision, ranges)
