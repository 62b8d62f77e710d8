"""kill -9 of a running ATM process mid-dispense, then a restart: the ledger, the dispenser's
counters and the journal agree, and no money is lost or invented.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from device.sim.bank_stack import BankStack
from peripherals.cash_dispenser import CashDispenserEmulator
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile
from tests.e2e.conftest import MakeAtm
from tests.e2e.test_atm_sessions import ALICE_CHECKING, LOGIN, events, run

WITHDRAW_100 = """
press F1
wait account_selection
press F1
wait amount_entry
press F3
wait ejecting_card
"""

CUT_POINTS = {
    # journal event to wait for -> script that holds the ATM still right after it
    "notes_counted": LOGIN + WITHDRAW_100 + "pause 60\n",
    "presented": LOGIN + WITHDRAW_100 + "take card\nwait presenting_cash\npause 60\n",
}


def journal_events(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["event"] for line in path.read_text().splitlines() if line]


def cassette_value(status: dict[str, Any]) -> int:
    return sum(int(c["count"]) * int(c["denomination"]) for c in status["cassettes"])


def fresh_dispenser_status() -> dict[str, Any]:
    profile = load_profile(DEFAULT_PROFILE)
    return CashDispenserEmulator.from_config(profile.devices["cash_dispenser"].settings).status()


@pytest.mark.parametrize("cut_after", sorted(CUT_POINTS))
def test_kill_during_dispense_then_recovery_settles_exactly(
    cut_after: str, make_atm: MakeAtm, bank_stack: BankStack, tmp_path: Path
) -> None:
    state_dir = tmp_path / "atm"
    script = tmp_path / "customer.txt"
    script.write_text(CUT_POINTS[cut_after])
    before = bank_stack.account_balance(ALICE_CHECKING)
    env = {**os.environ, "ATM_SIM_HOME": str(tmp_path / "home"), "LOG_LEVEL": "WARNING"}
    command = [
        sys.executable,
        "-m",
        "device.sim.cli",
        "atm",
        "run",
        "--virtual-clock",
        "--port",
        str(bank_stack.server.port),
        "--state-dir",
        str(state_dir),
        "--script",
        str(script),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    journal = state_dir / "journal.jsonl"
    try:
        deadline = time.monotonic() + 60
        while cut_after not in journal_events(journal):
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, f"never reached {cut_after}"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
    assert "taken" not in journal_events(journal)

    restarted = make_atm(state_dir)
    run(restarted, "wait idle\n")
    status = restarted.bay.cash_dispenser.status()
    report = restarted.controller.recovery_report
    assert len(report) == 1 and "reversal, 0 of 10000 cents" in report[0]
    # The bank: the hold is released and nothing was posted.
    assert bank_stack.account_balance(ALICE_CHECKING) == before
    # The dispenser: exactly the 100.00 that left the cassettes sits in the reject or retract
    # bin; nothing is left in the stacker or at the shutter.
    initial = fresh_dispenser_status()
    assert cassette_value(initial) - cassette_value(status) == 10000
    assert int(status["stacker"]) == 0 and int(status["presented"]) == 0
    bin_name = "retract_bin" if cut_after == "presented" else "reject_bin"
    assert int(status[bin_name]) > 0
    # The journal: the withdrawal is settled by a reversal the host acknowledged.
    assert "reversal_acknowledged" in events(restarted)
