"""Job records in Redis: list and dataset jobs, delivery accounting, retry/delete bookkeeping."""
