"""Adaptation: the adapt and adapt_member stages' logic, without a single target test label.

one_method (one method trained, each validator's epoch kept), portfolio (`adapt.method: auto`:
the members and the rule's choice), rules (the label-free rules that choose among members),
diagnostics (label-free warnings).

Imports: adaptflow.core, data, models, methods, training.
"""
