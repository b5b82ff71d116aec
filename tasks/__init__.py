"""The contract between producers and workers.

``tasks:app`` is the Celery app, so ``celery -A tasks worker|inspect|flower`` work as
every Celery user expects. Nothing here imports torch: producers import this package.
"""

from tasks.app import app
from tasks.routing import EMBED_TASK, queue_for

__all__ = ["app", "EMBED_TASK", "queue_for"]
