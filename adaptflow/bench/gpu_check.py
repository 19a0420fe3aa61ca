"""One command that proves the CUDA paths on a bare GPU machine (`make gpu-check`).

Installs the wheel bundle built by `make gpu-bundle` offline (`pip install --no-index`; only
what the interpreter lacks), runs the CUDA tests (tests/cuda) and the throughput benchmark at
the GPU settings for source-only training and DANN, and writes summary.json, summary.md, the
full log and each benchmark's throughput-<method>.json (a results/throughput/ row) to --results.
Needs only torch on the machine to start; the tests and the benchmark run from this source tree
with its packages and the bundle's.

    python -m adaptflow.bench.gpu_check --results results/gpu   # on a GPU machine
    python -m adaptflow.bench.gpu_check --install-only          # the offline install alone

Run it from the repository root (it imports nothing of adaptflow, and the tests and the
benchmark it starts run from this source tree).

Without a CUDA device it stops at once with one `adaptflow error: no CUDA device` line, exit 2.
`--device cpu` (with small `--bench-args`) dry-runs the whole check on a CPU instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: tests/ and adaptflow/ side by side
REQUIREMENTS = Path(__file__).resolve().parent / "gpu_requirements.txt"
GPU_SETTINGS = "--backbone resnet50 --batch 256 --size 224 --compile"
BENCH_METHODS = ("source_only", "dann")
# the targets set for one H100, bf16, 224 px, batch 256, compiled ResNet-50 (benchmark figures, not
# tests: a miss is reported, it does not fail the check)
TARGETS = [
    ("source_only", "engine_images_per_second", 5000.0, "source-only img/s"),
    ("dann", "engine_images_per_second", 4400.0, "DANN img/s"),
    ("source_only", "ratio", 0.9, "source-only: adaptflow loop / plain PyTorch loop"),
    ("dann", "ratio", 0.9, "DANN: adaptflow loop / plain PyTorch loop"),
]


def fail(message: str) -> None:
    print(f"adaptflow error: {message}", file=sys.stderr)
    raise SystemExit(2)


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        fail(
            f"no CUDA device: torch {torch.__version__} sees no GPU "
            "(torch.cuda.is_available() is False); run the GPU check on a machine with one"
        )


def install_bundle(bundle: Path) -> None:
    """pip install the requirements from the bundle alone: no index, no pip config files."""
    if not bundle.is_dir():
        fail(f"{bundle}: missing; build it with `make gpu-bundle` where pip reaches an index")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(PIP_ROOT_USER_ACTION="ignore")
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index"]
    command += ["--find-links", str(bundle), "-r", str(REQUIREMENTS)]
    if subprocess.run(command, env=env).returncode != 0:
        fail(f"{bundle}: the offline install failed (above); rebuild it with `make gpu-bundle`")


def run_logged(command: list[str], log: Path, env: dict[str, str]) -> int:
    """Run `command` from the source tree, echoing its output and appending it to `log`."""
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n$ {shlex.join(command)}\n")
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in process.stdout:
            sys.stdout.write(line)
            handle.write(line)
        return process.wait()


OUTCOMES = ("passed", "failed", "skipped", "errors")
EPOCH_KEYS = ("epoch", "images_per_second", "peak_memory_mb")
JUNIT_TAGS = {"failure": "failed", "error": "errors", "skipped": "skipped"}


def _case(case: ElementTree.Element) -> dict:
    outcome, message = "passed", ""
    for child in case:
        if child.tag in JUNIT_TAGS:
            outcome = JUNIT_TAGS[child.tag]
            message = (child.get("message") or "").strip().split("\n")[0][:200]
    seconds = float(case.get("time") or 0)
    return {"name": case.get("name"), "outcome": outcome, "message": message, "seconds": seconds}


def junit_outcomes(junit: Path) -> dict:
    """Counts and per-test outcomes from pytest's JUnit XML (missing: pytest did not finish)."""
    if not junit.is_file():
        return {**dict.fromkeys(OUTCOMES, 0), "errors": 1, "cases": []}
    cases = [_case(case) for case in ElementTree.parse(junit).getroot().iter("testcase")]
    counts = {name: sum(c["outcome"] == name for c in cases) for name in OUTCOMES}
    return {**counts, "cases": cases}


def run_tests(scratch: Path, log: Path, device: str) -> tuple[dict, list]:
    junit, figures = scratch / "cuda-tests.xml", scratch / "cuda-figures.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADAPTFLOW_TEST_DEVICE": device}
    env["ADAPTFLOW_GPU_REPORT"] = str(figures)
    command = [sys.executable, "-m", "pytest", "tests/cuda", "--confcutdir", "tests/cuda"]
    command += ["-m", "cuda", "-ra", "-p", "no:cacheprovider", "--log-level", "WARNING"]
    command += ["--junitxml", str(junit)]
    run_logged(command, log, env)
    records = json.loads(figures.read_text())["records"] if figures.is_file() else []
    return junit_outcomes(junit), records


def run_benchmarks(results_dir: Path, log: Path, device: str, settings: str) -> list[dict]:
    """Each method's throughput; its JSON stays in `results_dir` for results/throughput/."""
    results = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for method in BENCH_METHODS:
        output = results_dir / f"throughput-{method}.json"
        command = [sys.executable, "-m", "adaptflow.bench", "throughput", "--method", method]
        command += [*shlex.split(settings), "--device", device, "--json", str(output)]
        code = run_logged(command, log, env)
        failed = {"method": method, "error": f"exit code {code}; see the log"}
        results.append(json.loads(output.read_text()) if code == 0 else failed)
    return results


def target_rows(throughput: list[dict], settings: str) -> list[dict]:
    """Each throughput target with the figure measured for it (None: not measured as specified)."""
    by_method = {r["method"]: r for r in throughput if "error" not in r}
    as_specified = shlex.split(settings) == shlex.split(GPU_SETTINGS)
    rows = []
    for method, key, threshold, label in TARGETS:
        measured = by_method[method][key] if as_specified and method in by_method else None
        met = None if measured is None else measured >= threshold
        rows.append({"target": label, "threshold": threshold, "measured": measured, "met": met})
    return rows


def environment(device: str) -> dict:
    import platform

    import torch

    cuda = device.startswith("cuda")
    return {
        "device": torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.machine()})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows] + [""]


def _tests_markdown(tests: dict, figures: list[dict]) -> list[str]:
    counts = ", ".join(f"{tests[name]} {name}" for name in OUTCOMES)
    lines = [f"## CUDA tests (tests/cuda): {counts}", ""]
    lines += _table(
        ["test", "outcome", "seconds", "reason"],
        [[c["name"], c["outcome"], c["seconds"], c["message"]] for c in tests["cases"]],
    )
    epochs = [(r, e) for r in figures for e in r.get("epochs", [])]
    if epochs:
        lines += ["Per trained epoch (toy data, small batches: a smoke figure, not a benchmark):"]
        rows = [[r["test"], *(e[k] for k in EPOCH_KEYS)] for r, e in epochs]
        lines += ["", *_table(["test", "epoch", "img/s", "peak GPU memory (MiB)"], rows)]
    other = [
        (r["test"], {k: v for k, v in r.items() if k not in ("test", "epochs")}) for r in figures
    ]
    rows = [[test, json.dumps(values)] for test, values in other if values]
    if rows:
        lines += ["Measured differences, parity, ops without deterministic kernels:", ""]
        lines += _table(["test", "figures"], rows)
    return lines


def _throughput_markdown(throughput: list[dict], settings: str, targets: list[dict]) -> list[str]:
    lines = [f"## Throughput: `python -m adaptflow.bench throughput {settings}`", ""]
    header = ["method", "backbone", "batch/domain", "px", "compile", "adaptflow img/s"]
    header += ["plain PyTorch img/s", "ratio", "peak GPU memory (MiB)"]
    rows = [
        [r["method"], r.get("error", r.get("backbone"))]
        + [r.get(k) for k in ("batch_per_domain", "size", "compile", "engine_images_per_second")]
        + [r.get(k) for k in ("plain_images_per_second", "ratio", "peak_memory_mb")]
        for r in throughput
    ]
    lines += _table(header, rows)
    lines += ["Targets (set for an H100, bf16, 224 px, batch 256, compiled ResNet-50):", ""]
    met = {True: "met", False: "NOT met", None: "not measured at these settings"}
    rows = [[t["target"], t["threshold"], t["measured"], met[t["met"]]] for t in targets]
    return lines + _table(["target", "threshold", "measured", "result"], rows)


def markdown(summary: dict) -> str:
    env = summary["environment"]
    lines = [f"# GPU check: {env['device']}", ""]
    lines += [f"torch {env['torch']} (CUDA {env['cuda']}), Python {env['python']}, {env['date']}."]
    lines += [f"Exit code {summary['exit_code']}.", ""]
    if summary["tests"] is not None:
        lines += _tests_markdown(summary["tests"], summary["test_figures"])
    if summary["throughput"] is not None:
        settings, targets = summary["bench_settings"], summary["targets"]
        lines += _throughput_markdown(summary["throughput"], settings, targets)
    return "\n".join(lines)


def write_summary(results: Path, summary: dict) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (results / "summary.md").write_text(markdown(summary), encoding="utf-8")
    print(f"\nsummary: {results / 'summary.md'} and summary.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "gpu-bundle")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "gpu")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the whole check")
    parser.add_argument("--bench-args", default=GPU_SETTINGS, help="throughput settings")
    parser.add_argument("--install-only", action="store_true")
    parser.add_argument("--no-install", action="store_true", help="the packages are there")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not args.install_only:
        require_cuda()  # before installing anything
    if not args.no_install:
        install_bundle(args.bundle)
    if args.install_only:
        return
    args.results.mkdir(parents=True, exist_ok=True)
    log = args.results / "gpu-check.log"
    log.write_text("", encoding="utf-8")
    summary = {"environment": environment(args.device), "bench_settings": args.bench_args}
    summary.update(tests=None, test_figures=[], throughput=None, targets=[])
    with tempfile.TemporaryDirectory(prefix="adaptflow-gpu-check-") as scratch:
        if not args.skip_tests:
            summary["tests"], summary["test_figures"] = run_tests(Path(scratch), log, args.device)
        if not args.skip_bench:
            summary["throughput"] = run_benchmarks(args.results, log, args.device, args.bench_args)
            summary["targets"] = target_rows(summary["throughput"], args.bench_args)
    tests_failed = summary["tests"] and (summary["tests"]["failed"] or summary["tests"]["errors"])
    bench_failed = any("error" in r for r in summary["throughput"] or [])
    summary["exit_code"] = 1 if tests_failed or bench_failed else 0
    write_summary(args.results, summary)
    raise SystemExit(summary["exit_code"])


if __name__ == "__main__":
    main()
