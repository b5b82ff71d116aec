"""Model memory: the model cache, loading and unloading measured, eviction policies, memory readings, the watchdog."""
