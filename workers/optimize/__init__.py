"""``embedfleet optimize``: export a model to ONNX, quantize it, gate it, register it.

The pipeline (``workers.optimize.pipeline``):

1. export the source model's transformer to ONNX (``torch.onnx.export``, dynamic batch
   and sequence axes), its tokenizer and sentence-transformers settings beside it;
2. ``onnx-int8``: quantize the weights to int8 with
   ``onnxruntime.quantization.quantize_dynamic`` (per-channel: per-tensor scales lost
   ~4% cosine on this model); ``onnx``: keep fp32 (for GPUs);
3. load the result through the fleet's own ``onnx`` wrapper and gate it against the
   source model on probe texts (``workers.optimize.gate``): mean cosine and a
   retrieval check; below the gate nothing is stored or registered
   (:class:`~workers.errors.QualityGateError`, exit code 2);
4. measure both models' texts/s on the same chunks, same threads;
5. move the artifact into the model store and add a config entry (type ``onnx``,
   ``version``, ``provenance``); ``embedfleet reload`` makes the fleet serve it.

Importing this package loads neither torch nor onnxruntime.
"""

from __future__ import annotations

#: Methods ``--to`` accepts: name -> (quantize weights to int8?)
METHODS = {"onnx-int8": True, "onnx": False}
#: Mean cosine to the source model a candidate must reach.
DEFAULT_MIN_COSINE = 0.99
#: Largest drop in retrieval quality (MRR of the probe retrieval task) allowed.
DEFAULT_MAX_RETRIEVAL_DROP = 0.01
#: Env var naming the model store folder (default: ``models/`` beside the config).
STORE_ENV = "EMBEDFLEET_MODEL_STORE"
