"""Benchmarks: scripts that print figures (never timed tests). `python -m adaptflow.bench -h`."""
