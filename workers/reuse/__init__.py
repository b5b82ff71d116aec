"""The fleet-wide embedding reuse store: vectors already computed, shared through Redis."""
