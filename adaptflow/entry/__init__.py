"""Entry points: what a user or DVC starts.

stage (what every stages/*.py shares: --help, the params check, one-line errors), preflight
(the whole of params.yaml checked first), command and predict_command (the `adaptflow`
command).

Imports: anything below it (every other adaptflow package).
"""
