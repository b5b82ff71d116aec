"""Where model files and configs come from: local paths, packages, the Hub, S3, SSM."""

from workers.sources.resolve import resolve_model_dir

__all__ = ["resolve_model_dir"]
