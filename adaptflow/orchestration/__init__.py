"""Orchestration: driving the DVC pipeline from Python, and reading what a run left behind.

dvc_runner (stage order, `dvc repro` of one stage with a time limit, why it ran), compare
(every method as one DVC experiment, ranked without labels), overview (`adaptflow results` and
`adaptflow status`), flow_report (the Prefect flow's report), ci_report (the pull request's).

Imports: adaptflow.core, adaptflow.methods (their names); stages run as processes, never imported.
"""
