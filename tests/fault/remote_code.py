"""Does loading a model run code shipped inside the model folder? Run as
``python -m tests.fault.remote_code WORKDIR``: builds a tiny BERT folder whose config
names custom classes (``auto_map``) in Python files that write a marker file when
imported, loads it through the real wrappers with ``trust_remote_code`` false and true,
and prints one JSON object: ``{"<type>:<trust>": true when the folder's code ran}``.

A separate process, so the Hugging Face modules cache can live in WORKDIR.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

CUSTOM_CONFIG = """
from pathlib import Path

Path({marker!r}).write_text("the model folder's code ran")

from transformers import BertConfig


class CustomConfig(BertConfig):
    model_type = "bert"
"""

CUSTOM_MODEL = """
from transformers import BertModel

from .custom_config import CustomConfig


class CustomModel(BertModel):
    config_class = CustomConfig
"""

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "text", "the", "model"]


def build_folder(folder: Path, marker: Path) -> None:
    """A tiny random BERT with tokenizer, plus custom code named in ``auto_map``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    data = json.loads((folder / "config.json").read_text())
    data["auto_map"] = {
        "AutoConfig": "custom_config.CustomConfig",
        "AutoModel": "custom_model.CustomModel",
    }
    (folder / "config.json").write_text(json.dumps(data))
    (folder / "custom_config.py").write_text(CUSTOM_CONFIG.format(marker=str(marker)))
    (folder / "custom_model.py").write_text(CUSTOM_MODEL)


def main(workdir: Path) -> dict[str, bool]:
    os.environ["HF_MODULES_CACHE"] = str(workdir / "hf-modules")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from workers.config.loader import parse_model_config
    from workers.models.registry import build_model

    results = {}
    for type_name in ("sentence_transformer", "bert"):
        for trust in (False, True):
            key = f"{type_name}:{str(trust).lower()}"
            marker = workdir / f"ran-{type_name}-{trust}"
            folder = workdir / f"model-{type_name}-{trust}"
            build_folder(folder, marker)
            entry = {"type": type_name, "model_path": str(folder), "RAM": 0.1, "device": "cpu"}
            if trust:
                entry["trust_remote_code"] = True
            config = parse_model_config({"m": entry})
            model = build_model("m", config["m"])
            model.encode(["a text"])
            results[key] = marker.exists()
    return results


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
