"""Model wrappers: one file per type, all implementing ``BaseEmbeddingModel``."""

from workers.models.base import BaseEmbeddingModel, generate_embeddings

__all__ = ["BaseEmbeddingModel", "generate_embeddings"]
