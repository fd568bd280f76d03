"""Benchmarks: each runs hotdesk side by side with a peer in the same run and writes its
figures to ``bench/results/<name>.json`` (and a chart ``<name>.png``)."""
