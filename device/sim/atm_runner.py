"""`atm-sim atm run`: one headless ATM against a host by address, driven by customer actions
read from a script file or stdin, printing each screen as it changes.
"""

from __future__ import annotations

import argparse
import binascii
import sys
from pathlib import Path
from typing import TextIO

from config.data_files import DataFileError
from config.log_context import log_context
from config.settings import Settings
from device.clock import Clock, SystemClock, VirtualClock
from device.screens import RenderedScreen
from device.sim.atm_home import atm_state_dir
from device.sim.customer_script import Action, ScriptError, parse_script, run_action
from device.sim.simulated_atm import AtmRunError, HostAddress, SimulatedAtm
from peripherals.cards import load_wallet
from peripherals.harness.profile import DEFAULT_PROFILE, AtmProfile, load_profile


def _show(out: TextIO, screen: RenderedScreen) -> None:
    body = " | ".join(screen.text().splitlines())
    out.write(f"screen {screen.name}: {body}\n")
    out.flush()


def _card_problem(profile: AtmProfile, actions: list[Action], script: str) -> str:
    """Why the script's cards cannot be inserted (unreadable wallet, a card not in it), or ""."""
    wallet_path = profile.devices["card_reader"].settings.get("wallet")
    try:
        wallet = load_wallet(Path(wallet_path)) if wallet_path else {}
    except DataFileError as err:
        return str(err)
    for action in actions:
        if action.verb == "insert" and action.args[0] not in wallet:
            known = ", ".join(sorted(wallet)) or "none"
            return (
                f"{script}: line {action.line}: no card {action.args[0]!r} in the wallet; "
                f"cards: {known}"
            )
    return ""


def run_atm(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        profile = load_profile(args.profile or DEFAULT_PROFILE)
    except DataFileError as err:
        print(f"atm-sim: {err}", file=sys.stderr)
        return 2
    if profile.host is None:
        print(f"atm-sim: {profile.source}: host: missing; the ATM needs a host", file=sys.stderr)
        return 2
    host = HostAddress(
        args.host or profile.host.address,
        args.port or profile.host.port,
        binascii.unhexlify(profile.host.mac_key),
    )
    source = sys.stdin if args.script in (None, Path("-")) else None
    try:
        lines = source.readlines() if source else args.script.read_text().splitlines()
        actions = parse_script(lines)
    except (OSError, ScriptError) as err:
        print(f"atm-sim: {args.script or 'stdin'}: {err}", file=sys.stderr)
        return 2
    problem = _card_problem(profile, actions, str(args.script or "stdin"))
    if problem:
        # Found before the ATM is built: a refused run leaves no state folders behind.
        print(f"atm-sim: {problem}", file=sys.stderr)
        return 2
    clock: Clock = VirtualClock() if args.virtual_clock else SystemClock()
    state_dir = args.state_dir or atm_state_dir(settings, profile.terminal_id)
    atm = SimulatedAtm(
        profile,
        host,
        state_dir,
        clock=clock,
        session_timeout_seconds=settings.session_timeout_seconds,
    )
    # One ATM in this process: its log lines carry its terminal id.
    with log_context(terminal_id=profile.terminal_id), atm:
        for name, url in atm.bay.urls().items():
            out.write(f"device {name} on {url}\n")
        for line in atm.controller.recovery_report:
            out.write(f"recovered {line}\n")
        _show(out, atm.controller.screen)
        atm.controller.screen_listeners.append(lambda screen: _show(out, screen))
        for action in actions:
            out.write(f"action {action}\n")
            out.flush()
            try:
                run_action(atm, action)
            except AtmRunError as err:
                print(f"atm-sim: line {action.line}: {err}", file=sys.stderr)
                return 1
    return 0
