"""Observability: events, logs, Prometheus metrics, token counts."""
