"""Worker-side guards under Celery: the request check, the threads pool's net, the hardened transport."""
