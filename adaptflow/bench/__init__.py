"""Benchmarks: scripts that print figures and record them (never timed tests).

`python -m adaptflow.bench <name>` runs one (throughput, rank, predict, shifts, methods,
demo-run, ddp); `--json` records it under results/ with its command, machine and commit, and
docs (`python -m adaptflow.bench.docs`) renders those files into the documentation.
gpu_check (`make gpu-check`) proves the CUDA paths on a bare GPU machine.

Imports: anything but adaptflow.entry.
"""
