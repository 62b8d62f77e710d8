"""Every shipped scenario runs here (one test per file), plus the runner's refusals and reports."""

from __future__ import annotations

import io
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import load_settings
from device.sim.scenarios.report import junit_xml, run_paths
from device.sim.scenarios.runner import ScenarioRunner
from device.sim.scenarios.schema import load_scenario, parse_scenario
from tests.conftest import TEST_SECRETS

SCENARIOS = Path(__file__).parents[2] / "config" / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.yaml"))


@pytest.fixture(scope="module")
def runner(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioRunner]:
    home = tmp_path_factory.mktemp("scenario-home")
    settings = load_settings({**TEST_SECRETS, "ATM_SIM_HOME": str(home)})
    with ScenarioRunner(postgres_url, settings, work_dir=home / "work") as made:
        yield made


def test_at_least_thirty_scenarios_ship() -> None:
    assert len(SHIPPED) >= 30


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_scenario(path: Path, runner: ScenarioRunner) -> None:
    scenario = load_scenario(path)
    result = runner.run(scenario)
    report = "\n".join(str(f) for f in result.failures) or result.error
    if scenario.known_failure:
        assert result.status == "xfail", f"marked known_failure but it passed: {path.name}"
        pytest.xfail(f"{scenario.known_failure} | {report}")
    assert result.status == "passed", f"{report}\nreplay: {result.replay}"
    assert result.checks > 0


def test_an_invalid_scenario_is_refused_with_file_line_and_reason_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "a_good.yaml"
    good.write_text((SCENARIOS / "balance_inquiry.yaml").read_text())
    bad = tmp_path / "b_bad.yaml"
    bad.write_text("version: 1\nsteps:\n  - wait: idle\n  - insert: alice\n  - type: 1234\n")
    out = io.StringIO()
    # An unreachable server: if anything tried to run, it would fail differently.
    code = run_paths(
        [tmp_path],
        server_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        settings=load_settings(TEST_SECRETS),
        out=out,
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}:5: type: 1234 must be a quoted string" in err, err
    assert "nothing was run" in err
    assert out.getvalue() == ""


def test_a_failed_expectation_reports_expected_seen_and_line(
    runner: ScenarioRunner, tmp_path: Path
) -> None:
    text = """version: 1
steps:
  - wait: idle
  - expect:
      state: out_of_service
expect:
  balances: {"10000003": 1}
"""
    result = runner.run(parse_scenario(text, tmp_path / "wrong.yaml"))
    assert result.status == "failed"
    state, balance = result.failures
    assert state.where.line == 5 and state.expected == "'out_of_service'" and state.seen == "idle"
    assert balance.where.line == 7
    assert "75000" in balance.seen and "'ledger': 1" in balance.expected
    assert f"{tmp_path / 'wrong.yaml'}:5: state: expected 'out_of_service', seen idle" == str(state)
    assert result.replay.startswith("atm-sim scenario run ") and "--seed 0" in result.replay
    xml = ET.fromstring(junit_xml([result]))
    assert xml.get("failures") == "1"
    failure = xml.find("testcase/failure")
    assert failure is not None and "wrong.yaml:5" in (failure.get("message") or "")


def test_the_cli_runs_a_folder_prints_a_table_and_writes_junit(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "unreadable_card.yaml").write_text((SCENARIOS / "unreadable_card.yaml").read_text())
    junit = tmp_path / "results.xml"
    out = io.StringIO()
    code = run_paths(
        [folder],
        server_url=postgres_url,
        settings=load_settings({**TEST_SECRETS, "ATM_SIM_HOME": str(tmp_path / "home")}),
        junit=junit,
        out=out,
        progress=lambda line: print(line, file=sys.stderr),
    )
    assert code == 0, out.getvalue()
    assert "unreadable_card" in out.getvalue() and "1 scenarios: 1 passed" in out.getvalue()
    assert "[1/1] unreadable_card: PASS" in capsys.readouterr().err
    assert ET.parse(junit).getroot().get("tests") == "1"


WRONG = """version: 1
steps:
  - wait: idle
  - expect:
      state: out_of_service
expect:
  balances: {"10000003": 1}
"""


def _without_wall_times(text: str) -> str:
    """The table and JUnit XML with the wall-clock figures (never the same twice) taken out."""
    text = re.sub(r'time="[0-9.]+"', 'time=""', text)
    return re.sub(r"^(\S+\s+[A-Z]+\s+\d+)\s+[0-9.]+(\s+[0-9.]+)$", r"\1 -\2", text, flags=re.M)


def test_jobs_2_reports_the_same_table_details_and_junit_as_jobs_1(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("unreadable_card", "host_declining", "balance_inquiry", "inactivity_at_pin_entry"):
        (folder / f"{name}.yaml").write_text((SCENARIOS / f"{name}.yaml").read_text())
    (folder / "c_wrong.yaml").write_text(WRONG)  # fails, second of five
    settings = load_settings({**TEST_SECRETS, "ATM_SIM_HOME": str(tmp_path / "home")})
    seen: dict[int, tuple[int, str, str, list[str]]] = {}
    for jobs in (1, 2):
        out = io.StringIO()
        junit = tmp_path / f"results-{jobs}.xml"
        lines: list[str] = []
        code = run_paths(
            [folder],
            server_url=postgres_url,
            settings=settings,
            junit=junit,
            out=out,
            progress=lines.append,
            jobs=jobs,
        )
        text = out.getvalue().replace(str(junit), "JUNIT")
        xml = _without_wall_times(junit.read_text())
        seen[jobs] = (code, _without_wall_times(text), xml, lines)
    code, table, xml, lines = seen[2]
    assert (code, table, xml) == seen[1][:3]
    assert code == 1
    assert "5 scenarios: 4 passed, 1 failed" in table
    assert f"{folder / 'c_wrong.yaml'}:5: state: expected 'out_of_service', seen idle" in xml
    names = [case.get("name") for case in ET.fromstring(xml).iter("testcase")]
    assert names == sorted(names)  # the files' order, whichever worker finished first
    assert sorted(lines) == sorted(seen[1][3])  # every start and end line, in any order
    assert "[2/5] c_wrong: FAIL" in lines


def test_with_jobs_2_this_process_runs_scenarios_beside_its_worker(
    postgres_url: str, tmp_path: Path
) -> None:
    from device.sim.scenarios.parallel import run_parallel

    names = ["unreadable_card", "host_declining", "balance_inquiry", "card_jam_on_eject"]
    scenarios = [load_scenario(SCENARIOS / f"{name}.yaml") for name in names * 2]
    settings = load_settings({**TEST_SECRETS, "ATM_SIM_HOME": str(tmp_path / "home")})
    seen: list[tuple[int, str | None]] = []
    with ScenarioRunner(postgres_url, settings, work_dir=tmp_path / "work") as runner:
        results = run_parallel(
            scenarios,
            runner,
            2,
            lambda index, _, result: seen.append((index, None if result is None else "done")),
        )
        here = runner.scenarios_run
    assert [r.scenario.name for r in results] == names * 2
    assert all(r.status == "passed" for r in results), [r.error for r in results]
    assert 1 <= here < len(scenarios)  # this process ran some, its worker the others
    assert sorted(i for i, what in seen if what is None) == list(range(len(scenarios)))
    assert sorted(i for i, what in seen if what == "done") == list(range(len(scenarios)))
