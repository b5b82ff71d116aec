"""``embedfleet serve``: the fleet behind OpenAI's HTTP API (embeddings, models, files,
batches) and the fleet's own Prometheus metrics.

Stateless: every process talks to Redis and the file store and never loads a model, so
any number run behind a load balancer. It imports tasks (the contract) and producers
(the client side), never workers.
"""
