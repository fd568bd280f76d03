"""Ledger benchmark: appends with optimistic concurrency, projection replay, codecs."""
