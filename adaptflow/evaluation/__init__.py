"""Evaluation: the only code that reads target test labels (the evaluate stage).

metrics (torchmetrics: source-only vs adapted, every validator's and rule's choice), report
(reports/evaluate.md), plots (dvclive: confusion matrices, per-class accuracy).

Imports: adaptflow.core, data, models.
"""
