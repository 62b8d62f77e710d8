"""Kiosk frame time at 1024x768 (median, p99) during a withdrawal and while idle, and the CPU
the kiosk process uses while its own loop (`KioskApp.run`) idles, with the operator panel
closed and open. Run: python -m scripts.bench.kiosk_bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

# The SDL drivers must be chosen before pygame starts.
os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"

from config.settings import load_settings
from device.clock import SystemClock
from device.sim.bank_stack import BankStack
from device.sim.customer_script import parse_script, run_action
from device.sim.kiosk.input_map import TogglePanel
from device.sim.kiosk.kiosk_app import HostSwitch, KioskApp, KioskCustomer
from device.sim.simulated_atm import SimulatedAtm
from host.database import stop_embedded
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile

WITHDRAWAL = """
wait idle
insert alice
wait pin_entry
type 1234
press enter
wait transaction_menu
press F1
wait account_selection
press F1
wait amount_entry
press F2
wait ejecting_card
take card
wait presenting_cash
take cash
wait idle
take receipt
take receipt
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(name: str, frames: list[float]) -> None:
    ms = [f * 1000 for f in frames]
    print(
        f"{name:<34} {len(ms):>5} frames  median {statistics.median(ms):6.2f} ms"
        f"  p99 {percentile(ms, 0.99):6.2f} ms  max {max(ms):6.2f} ms"
    )


def idle_run(kiosk: KioskApp, seconds: float) -> tuple[float, float]:
    """Run the kiosk's own loop for `seconds`; returns (CPU seconds, wall seconds)."""
    kiosk.running = True
    stop = threading.Timer(seconds, lambda: setattr(kiosk, "running", False))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stop.start()
    kiosk.run()
    return time.process_time() - cpu0, time.perf_counter() - wall0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="atm-sim-kiosk-bench-"))
    env = {
        "ATM_SIM_HOME": str(home),
        "BCRYPT_ROUNDS": "4",
        "SECRET_KEY": "bench-secret-key-0123456789",
        "PIN_PEPPER": "bench-pin-pepper-0123456789",
    }
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    settings = load_settings(env)
    profile = load_profile(DEFAULT_PROFILE)
    assert profile.host is not None
    clock = SystemClock()
    with BankStack(settings) as bank:
        atm = SimulatedAtm(
            profile, bank.address_for(profile.host.mac_key), home / "atm", clock=clock
        )
        with atm:
            kiosk = KioskApp(atm, size=(1024, 768), host_switch=HostSwitch(bank.server))
            try:
                frames: list[float] = []
                plain_frame = kiosk.frame

                def timed_frame() -> None:
                    begin = time.perf_counter()
                    plain_frame()
                    frames.append(time.perf_counter() - begin)

                kiosk.frame = timed_frame  # type: ignore[method-assign]
                customer = KioskCustomer(kiosk, clock)
                for action in parse_script(WITHDRAWAL.splitlines()):
                    run_action(customer, action)
                report("withdrawal (redraw on change)", frames)

                forced: list[float] = []
                for _ in range(300):
                    begin = time.perf_counter()
                    kiosk._drawn = None  # a full redraw every frame: the worst case
                    plain_frame()
                    forced.append(time.perf_counter() - begin)
                report("idle, full redraw every frame", forced)

                idle_run(kiosk, 1.0)  # past the last change: the loop goes quiet
                for panel in (False, True):
                    if panel != kiosk.show_panel:
                        kiosk.perform(TogglePanel())
                        idle_run(kiosk, 1.0)
                    frames.clear()
                    draws = kiosk.draws
                    cpu, wall = idle_run(kiosk, args.idle_seconds)
                    name = "panel open" if panel else "panel closed"
                    report(f"idle run loop, {name}", frames)
                    print(
                        f"idle CPU, {name}: {cpu:.2f} s CPU over {wall:.2f} s wall = "
                        f"{100 * cpu / wall:.1f}% of one core (whole process: kiosk, device "
                        f"links, bank host); {len(frames) / wall:.1f} frames/s, "
                        f"{(kiosk.draws - draws) / wall:.1f} draws/s"
                    )
            finally:
                kiosk.close()
    stop_embedded()
    shutil.rmtree(home, ignore_errors=True)  # the embedded server's data directory


if __name__ == "__main__":
    main()
