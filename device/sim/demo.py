"""`atm-sim demo`: a bank, a host and one simulated ATM on ptys, and Alice withdrawing cash.

Prints the screens, the journal's device events, the receipt and Alice's new balance.
"""

from __future__ import annotations

import sys
from typing import TextIO

from config.log_context import log_context
from config.settings import Settings
from device.controller.atm_controller import money
from device.screens import RenderedScreen
from device.sim.atm_home import atm_state_dir
from device.sim.bank_stack import BankStack
from device.sim.customer_script import parse_script, run_action
from device.sim.simulated_atm import SimulatedAtm
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile

ALICE_WITHDRAWS = """
wait idle
insert alice
wait pin_entry
type 1234
press enter
wait transaction_menu
press F1          # withdraw cash
wait account_selection
press F1          # from checking
wait amount_entry
press F2          # 50.00
wait ejecting_card
take card
wait presenting_cash
take cash
wait idle
"""

ALICE_CHECKING = "10000001"


def _print_screen(out: TextIO, screen: RenderedScreen) -> None:
    out.write(f"  +-- screen: {screen.name}\n")
    for line in screen.text().splitlines():
        out.write(f"  |   {line}\n")


def run_demo(settings: Settings, out: TextIO = sys.stdout) -> int:
    out.write("Starting the bank (PostgreSQL), migrating and seeding it...\n")
    with BankStack(settings) as bank:
        before = bank.account_balance(ALICE_CHECKING)
        out.write(f"Bank host listening on 127.0.0.1:{bank.server.port} (ISO 8583)\n")
        profile = load_profile(DEFAULT_PROFILE)
        assert profile.host is not None
        atm = SimulatedAtm(
            profile,
            bank.address_for(profile.host.mac_key),
            atm_state_dir(settings, profile.terminal_id),
            session_timeout_seconds=settings.session_timeout_seconds,
        )
        # One ATM in this process: its log lines carry its terminal id.
        with log_context(terminal_id=profile.terminal_id), atm:
            for name, url in atm.bay.urls().items():
                out.write(f"  {name:<16} on {url}\n")
            for line in atm.controller.recovery_report:
                out.write(f"  recovered: {line}\n")
            atm.controller.screen_listeners.append(lambda screen: _print_screen(out, screen))
            last_seq = max((e.seq for e in atm.journal.entries()), default=0)
            for action in parse_script(ALICE_WITHDRAWS.splitlines()):
                if action.verb != "wait":
                    out.write(f"> customer: {action}\n")
                run_action(atm, action)
                for entry in atm.journal.entries():
                    if entry.seq > last_seq:
                        details = " ".join(f"{k}={v}" for k, v in sorted(entry.fields.items()))
                        out.write(f"    journal: {entry.event} {details}\n")
                        last_seq = entry.seq
            out.write("--- receipt ---\n")
            receipts = atm.receipts()
            out.write((receipts[-1] if receipts else "(no receipt printed)") + "\n")
            out.write("---------------\n")
        after = bank.account_balance(ALICE_CHECKING)
    out.write(f"Alice's checking account {ALICE_CHECKING}: {money(after)} (was {money(before)})\n")
    return 0 if after == before - 5000 else 1
