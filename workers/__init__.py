"""Everything that runs inside a worker: config, model sources, wrappers, cache, memory.

Importing this package loads no torch; wrappers import their libraries when a model
of their type is first loaded.
"""
