"""Core: what every layer shares, and nothing about images or models.

params (the one place that knows params.yaml), paths (where each stage reads and writes),
errors (the user error, one line and exit 2), io (atomic writes, hashing, safe torch loads),
devices (device choice and seeding), logs and live (log lines, dvclive plots).

Imports: the standard library and third-party packages only; nothing else of adaptflow.
"""
