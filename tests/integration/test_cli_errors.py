"""The command line answers bad input with one line that says what was wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def atm_sim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device.sim.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_bad_setting_stops_with_one_line() -> None:
    result = atm_sim("journal", "show", env={"PATH": "", "SESSION_TIMEOUT_SECONDS": "soon"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "atm-sim: SESSION_TIMEOUT_SECONDS='soon': expected a whole number greater than 0"
    ]


def test_invalid_customer_script_is_refused_before_anything_runs(tmp_path: Path) -> None:
    script = tmp_path / "customer.txt"
    script.write_text("wait idle\ninsert alice\ndance\n")
    result = atm_sim("atm", "run", "--port", "1", "--script", str(script))
    assert result.returncode == 2
    assert "line 3: cannot understand 'dance'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_journal_is_one_line(tmp_path: Path) -> None:
    result = atm_sim("journal", "show", "--path", str(tmp_path / "none.jsonl"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"atm-sim: no journal at {tmp_path / 'none.jsonl'}"


def test_link_backend_with_a_distributed_run_is_refused_in_one_line() -> None:
    result = atm_sim(
        "fleet", "--atms", "2", "--sessions", "2", "--distributed", "--link-backend", "inline"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "atm-sim: --link-backend applies to runs on this machine, not --distributed"
    ]
