"""The Celery chunk tasks, thin: validate, hand to the worker's encoder, record."""
