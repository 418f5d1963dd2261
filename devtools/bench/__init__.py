"""``make bench``: cold start, per-request cost, throughput, as ratios to a baseline.

``run`` (the measurements and ``docs/benchmarks.md``; ``python -m devtools.bench``),
``child`` (one measured process, run by path), ``consumer`` (the consumer's batch
figures), ``cost`` (prices and the cost per million), ``local`` (the local stack's
throughput).
"""
