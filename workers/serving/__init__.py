"""Serving: the worker entry point, boot, remote-control commands, the runtime and its threads."""
