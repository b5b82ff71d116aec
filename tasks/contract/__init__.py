"""What producers and workers agree on: wire format, model spec, errors, catalog, chunk planning, settings, logs."""
