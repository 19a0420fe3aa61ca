"""The adaptflow Prefect flow: one task per DVC stage, in DAG order, run through DVC.

DVC decides what is stale, so a scheduled run recomputes only what changed. The flow first
checks the whole of params.yaml, then records which stages ran or were skipped, why, and how
long they took, with the headline results, as artifacts. Transient failures (a crash, a kill,
a busy DVC lock) are retried; a user error (bad data or params) or a stage over its time
limit fails the flow once with the stage's own message: one `adaptflow error:` line, exit 2
(Prefect's tracebacks of it stay in the run's logs on the server; --debug shows them here too).

    python flows/pipeline.py                        # one run now, on a private (ephemeral) Prefect
    python flows/pipeline.py --api-url URL          # one run now, recorded by the server at URL
    python flows/pipeline.py --serve                # serve on the nightly schedule (a server)
    python flows/pipeline.py --compare [METHOD ...] # methods as DVC experiments, one table
    prefect deploy --all                            # or prefect.yaml's deployment, for a worker
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

from adaptflow.core.errors import ERROR_PREFIX, EXIT_USER_ERROR, AdaptflowError
from adaptflow.entry.command import quiet_when_the_reader_leaves
from adaptflow.entry.preflight import check_params
from adaptflow.entry.stage import report_user_error
from adaptflow.orchestration.compare import (
    collect,
    resolve_methods,
    run_comparison,
    table,
    warn_if_results_uncommitted,
)
from adaptflow.orchestration.dvc_runner import (
    StageFailed,
    StageRun,
    record_stage,
    reproduce_stage,
    run_stage_alone,
    stage_groups,
)
from adaptflow.orchestration.flow_report import render_flow_report

PROJECT = Path(__file__).resolve().parents[1]
NIGHTLY = "0 2 * * *"
SERVED_DEPLOYMENT = "adaptflow-served"  # prefect.yaml's work-pool deployment: adaptflow-nightly
STAGE_TIMEOUT_MINUTES = 240.0  # one stage; a GPU-sized adapt of a large target fits
FLOW_TIMEOUT_SECONDS = 24 * 3600  # the whole run: a nightly run must end before the next
EPHEMERAL_STARTUP_SECONDS = 180  # a first start migrates a new database: slow on a busy machine
API_CHECK_SECONDS = 5.0  # a Prefect server's /health answers at once; nothing there: refused


def is_user_error(error: BaseException | None) -> bool:
    """Bad data or params, or a stage over its time limit: the same every time it is rerun."""
    return isinstance(error, AdaptflowError) and not getattr(error, "transient", False)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry crashes, kills and lock contention; never a user error or a time-out."""
    return not is_user_error(state.result(raise_on_failure=False))


@task(task_run_name="params", retries=0)
def params_check(root: str) -> None:
    """The whole of params.yaml, before any stage spends time (a user error is not retried)."""
    check_params(Path(root) / "params.yaml")


@task(
    task_run_name="{stage}",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_if_transient,
)
def dvc_stage(stage: str, root: str, timeout_minutes: float) -> dict[str, Any]:
    """Reproduce one DVC stage; return what happened to it and why."""
    logger = get_run_logger()
    run = reproduce_stage(
        Path(root), stage, on_line=logger.info, timeout_seconds=timeout_minutes * 60
    )
    return _record(run)


def _record(run: StageRun) -> dict[str, Any]:
    get_run_logger().info("%s: %s in %.1f s (%s)", run.stage, run.status, run.seconds, run.reason)
    return {
        "stage": run.stage,
        "status": run.status,
        "seconds": round(run.seconds, 2),
        "reason": run.reason,
    }


@task(
    task_run_name="{stage}",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_if_transient,
)
def concurrent_stage(stage: str, root: str, timeout_minutes: float, threads: int) -> StageRun:
    """One stage of a group, run beside the others outside `dvc repro` (recorded afterwards)."""
    return run_stage_alone(
        Path(root),
        stage,
        threads=threads,
        on_line=get_run_logger().info,
        timeout_seconds=timeout_minutes * 60,
    )


def run_group(
    group: list[str], root: str, timeout_minutes: float, at_once: int
) -> list[dict[str, Any]]:
    """A group of independent stages (the auto portfolio's members), `at_once` at a time; each
    is recorded in dvc.lock once it ends, one by one (DVC's lock)."""
    if at_once <= 1 or len(group) == 1:
        return [dvc_stage(stage, root, timeout_minutes) for stage in group]
    threads = max(1, (os.cpu_count() or 1) // at_once)
    records = []
    for start in range(0, len(group), at_once):
        futures = [
            concurrent_stage.submit(stage, root, timeout_minutes, threads)
            for stage in group[start : start + at_once]
        ]
        for future in futures:
            run = future.result()
            if run.status == "ran":
                record_stage(Path(root), run.stage, on_line=get_run_logger().info)
            records.append(_record(run))
    return records


def _failure(error: BaseException) -> str:
    if isinstance(error, StageFailed):
        return error.message
    return str(error) or f"stopped ({type(error).__name__})"


@flow(name="adaptflow-pipeline", log_prints=True, timeout_seconds=FLOW_TIMEOUT_SECONDS)
def pipeline(
    root: str = str(PROJECT),
    stage_timeout_minutes: float = STAGE_TIMEOUT_MINUTES,
    stages_at_once: int = 1,
) -> list[dict[str, Any]]:
    """Run every stage in order through DVC and report what ran, was skipped or failed.

    `stages_at_once`: how many independent stages (the members of `adapt.method: auto`) run at
    the same time; more than 1 pays off with a GPU (or several CPU cores) each member leaves idle.
    """
    project = Path(root)
    records: list[dict[str, Any]] = []
    current = "params"
    try:
        params_check(root)
        for group in stage_groups(project):
            current = ", ".join(group)
            records += run_group(group, root, stage_timeout_minutes, stages_at_once)
    except BaseException as error:  # a signal or time-out too: the report says where it stopped
        records.append({"stage": current, "status": "failed", "message": _failure(error)})
        raise
    finally:
        create_table_artifact(
            key="adaptflow-stages", table=records, description="DVC stages: ran, skipped, failed"
        )
        create_markdown_artifact(
            key="adaptflow-report", markdown=render_flow_report(project, records)
        )
    return records


@task(
    task_run_name="experiment-portfolio",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_if_transient,
)
def portfolio_experiment(methods: list[str], root: str, overrides: list[str]) -> str:
    """The methods as one DVC experiment of the auto portfolio (the workspace is left untouched)."""
    return run_comparison(Path(root), methods, overrides, on_line=get_run_logger().info)


@flow(name="adaptflow-compare", log_prints=True, timeout_seconds=FLOW_TIMEOUT_SECONDS)
def compare(
    methods: list[str] | None = None, overrides: list[str] | None = None, root: str = str(PROJECT)
) -> list[dict[str, Any]]:
    """Run the methods as one portfolio experiment; publish them ranked without target labels."""
    methods = resolve_methods(methods)
    warn_if_results_uncommitted(Path(root))
    name = portfolio_experiment(methods, root, overrides or [])
    rows, warnings = collect(Path(root), name)
    create_table_artifact(
        key="adaptflow-compare",
        table=[asdict(r) for r in rows],
        description="adaptation methods ranked by the label-free rule (accuracy: oracle only)",
    )
    create_markdown_artifact(key="adaptflow-compare-report", markdown=table(rows, warnings))
    return [asdict(r) for r in rows]


class _OneLineErrors(argparse.ArgumentParser):
    """A wrong option is one `adaptflow error:` line and exit 2, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{ERROR_PREFIX} {message}; see `{self.prog} --help`\n")


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid float value: 'x'"
    return parse


def _arguments() -> argparse.Namespace:
    parser = _OneLineErrors(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default=str(PROJECT), help="the project (default: this one)")
    parser.add_argument(
        "--api-url",
        help="record the run on this Prefect server (e.g. http://127.0.0.1:4200/api); default: "
        "a private ephemeral Prefect, whatever PREFECT_API_URL your profile sets",
    )
    parser.add_argument(
        "--stage-timeout-minutes", type=_positive(float), default=STAGE_TIMEOUT_MINUTES, metavar="M"
    )
    parser.add_argument(
        "--stages-at-once",
        type=_positive(int),
        default=1,
        metavar="N",
        help="run up to N independent stages (the auto portfolio's members) at the same time",
    )
    parser.add_argument("--serve", action="store_true", help="serve on a schedule (a server)")
    parser.add_argument("--cron", default=NIGHTLY, help=f"schedule for --serve ({NIGHTLY})")
    parser.add_argument(
        "--compare", nargs="*", metavar="METHOD", help="compare methods (none named: all)"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show Prefect's tracebacks of user errors too"
    )
    return parser.parse_args()


def require_api(url: str, otherwise: str) -> None:
    """Refuse, in one line, a Prefect API URL where no server answers (Prefect's client would
    fail later with a traceback): GET <url>/health, as Prefect's own health check does."""
    import httpx

    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=API_CHECK_SECONDS)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        problem = f"cannot reach the Prefect API at {url} ({reason})"
    else:
        if response.status_code < 400 or response.status_code in (401, 403):  # a key: Prefect's
            return
        problem = f"no Prefect API at {url} (HTTP {response.status_code} on /health; a local "
        problem += "server's is http://127.0.0.1:4200/api)"
    raise AdaptflowError(
        f"{problem}; start one with `make prefect-server` (127.0.0.1:4200) {otherwise}"
    )


def _prefect_api(url: str | None, serving: bool):
    """Settings for this process: the server named, else (one-off runs) an ephemeral Prefect."""
    if url:
        require_api(url, "or leave out --api-url")
        return temporary_settings(updates={PREFECT_API_URL: url})
    if serving:
        if not PREFECT_API_URL.value():
            raise AdaptflowError(
                "--serve needs a Prefect server: start one (make prefect-server) and pass "
                "--api-url http://127.0.0.1:4200/api (or set PREFECT_API_URL)"
            )
        require_api(PREFECT_API_URL.value(), "or set PREFECT_API_URL to a running one")
        return contextlib.nullcontext()
    return temporary_settings(  # a private server for this run alone: it reports nothing home
        updates={
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: EPHEMERAL_STARTUP_SECONDS,
            PREFECT_SERVER_ANALYTICS_ENABLED: False,
        },
        restore_defaults={PREFECT_API_URL},
    )


class _WithoutUserErrorTracebacks(logging.Filter):
    """Prefect logs a failed task or flow with its traceback ("Task run failed with exception",
    "Encountered exception during execution"); for a user error, main() prints the one line
    that matters, so the console skips these (the run's logs on the server keep them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and is_user_error(record.exc_info[1]))


def _quiet_user_errors_on_the_console() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.addFilter(_WithoutUserErrorTracebacks())


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    # an orderly exit: running stages are stopped (adaptflow.orchestration.dvc_runner) and the
    # ephemeral Prefect server is shut down by its exit hook, neither of which happens on
    # SIGTERM's default
    sys.exit(128 + signum)


def _run(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if not args.debug:
        _quiet_user_errors_on_the_console()
    try:
        with _prefect_api(args.api_url, args.serve):
            if args.serve:
                pipeline.serve(name=SERVED_DEPLOYMENT, cron=args.cron)
            elif args.compare is not None:
                compare(args.compare or None, root=args.root)
            else:
                pipeline(
                    root=args.root,
                    stage_timeout_minutes=args.stage_timeout_minutes,
                    stages_at_once=args.stages_at_once,
                )
    except AdaptflowError as error:
        if not is_user_error(error):  # retries did not help: not the user's doing
            sys.exit(f"adaptflow: {error}")
        report_user_error(error)


def main() -> None:
    with quiet_when_the_reader_leaves():  # `... --help | head -1`
        _run(_arguments())


if __name__ == "__main__":
    main()
