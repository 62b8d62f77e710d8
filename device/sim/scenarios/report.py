"""Scenario results for people (a table, failure details, the command that replays a failure)
and for CI (JUnit XML); plus `run_paths`, what `atm-sim scenario run` calls.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from device.sim.scenarios.runner import ScenarioResult

MARKS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "xfail": "XFAIL", "xpass": "XPASS"}


def table(results: Sequence[ScenarioResult]) -> str:
    """One line per scenario, then the totals."""
    width = max([len(r.scenario.name) for r in results] + [8])
    lines = [f"{'scenario':<{width}}  {'result':<6} {'checks':>6} {'wall s':>7} {'virtual s':>9}"]
    for r in results:
        lines.append(
            f"{r.scenario.name:<{width}}  {MARKS[r.status]:<6} {r.checks:>6} "
            f"{r.wall_seconds:>7.2f} {r.virtual_seconds:>9.1f}"
        )
    counts = {status: sum(r.status == status for r in results) for status in MARKS}
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    lines.append(f"{len(results)} scenarios: {summary}")
    return "\n".join(lines)


def details(result: ScenarioResult) -> str:
    """What went wrong in one scenario, where, and how to replay it."""
    lines = [f"{MARKS[result.status]} {result.scenario.name} ({result.scenario.path})"]
    if result.scenario.known_failure:
        lines.append(f"  known failure: {result.scenario.known_failure}")
    if result.error:
        lines.append(f"  error: {result.error}")
    for failure in result.failures:
        lines.append(f"  {failure.where}: {failure.what}")
        lines.append(f"      expected: {failure.expected}")
        lines.append(f"      seen:     {failure.seen}")
    lines.append(f"  replay: {result.replay}")
    return "\n".join(lines)


def junit_xml(results: Sequence[ScenarioResult], suite: str = "atm-sim scenarios") -> str:
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(sum(r.status in ("failed", "xpass") for r in results)),
        errors=str(sum(r.status == "error" for r in results)),
        skipped=str(sum(r.status == "xfail" for r in results)),
        time=f"{sum(r.wall_seconds for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            root,
            "testcase",
            classname=f"scenarios.{r.scenario.path.stem}",
            name=r.scenario.name,
            file=str(r.scenario.path),
            time=f"{r.wall_seconds:.3f}",
        )
        if r.status == "failed":
            failure = ET.SubElement(case, "failure", message=str(r.failures[0]))
            failure.text = details(r)
        elif r.status == "error":
            error = ET.SubElement(case, "error", message=r.error)
            error.text = details(r)
        elif r.status == "xfail":
            ET.SubElement(case, "skipped", message=f"known failure: {r.scenario.known_failure}")
        elif r.status == "xpass":
            ET.SubElement(
                case, "failure", message="marked known_failure but passed: remove the mark"
            )
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def run_paths(
    paths: Sequence[Path],
    *,
    server_url: str,
    settings: object,
    seed: int = 0,
    junit: Path | None = None,
    out: TextIO = sys.stdout,
    progress: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> int:
    """Load every scenario (all must be valid), run them, print the table; 0 if all passed.

    With `jobs` above 1 the scenarios run on that many runners (this process and `jobs - 1`
    worker processes); the table, the details and the JUnit XML keep the order of the files all
    the same."""
    from config.data_files import DataFileError
    from config.settings import Settings
    from device.sim.scenarios.runner import ScenarioRunner
    from device.sim.scenarios.schema import load_scenarios

    assert isinstance(settings, Settings)
    if jobs < 1:
        raise ValueError("jobs must be 1 or more")
    try:
        scenarios = load_scenarios(paths)
    except DataFileError as err:
        print(f"atm-sim: {err}", file=sys.stderr)
        print("atm-sim: nothing was run", file=sys.stderr)
        return 2
    results: list[ScenarioResult] = []
    total = len(scenarios)
    parallel = jobs > 1 and total > 1
    if parallel:
        from device.sim.scenarios.parallel import prepare_workers, run_parallel
        from device.sim.scenarios.schema import Scenario

        prepare_workers()  # its imports run while this process makes the template

        def report(index: int, scenario: Scenario, result: ScenarioResult | None) -> None:
            if progress is None:
                return
            if result is None:
                progress(f"[{index + 1}/{total}] {scenario.name} ...")
            else:
                progress(f"[{index + 1}/{total}] {scenario.name}: {MARKS[result.status]}")

    with ScenarioRunner(server_url, settings, seed=seed) as runner:
        if parallel:
            # This process makes the template (each runner copies it into its own bank) and
            # runs scenarios beside its workers.
            results = run_parallel(scenarios, runner, jobs, report)
        else:
            for index, scenario in enumerate(scenarios, start=1):
                if progress is not None:
                    progress(f"[{index}/{total}] {scenario.name} ...")
                result = runner.run(scenario)
                results.append(result)
                if progress is not None:
                    progress(f"[{index}/{total}] {scenario.name}: {MARKS[result.status]}")
    print(table(results), file=out)
    for result in results:
        if result.status not in ("passed",):
            print(details(result), file=out)
    if junit is not None:
        junit.write_text(junit_xml(results), encoding="utf-8")
        print(f"JUnit XML written to {junit}", file=out)
    return 0 if all(r.ok for r in results) else 1
