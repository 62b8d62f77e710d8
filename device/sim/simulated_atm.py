"""A whole simulated ATM: the emulated devices in a bay, drivers on their links, the host link,
the journal and the controller, plus the customer's side of the fascia.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.advice_queue import AdviceQueue
from device.clock import Clock, SystemClock, VirtualClock
from device.controller.atm_controller import AtmController, ControllerConfig
from device.drivers.base import SerialDriver
from device.drivers.card_reader import CardReaderDriver
from device.drivers.cash_dispenser import CashDispenserDriver, plan_notes
from device.drivers.pin_pad import PinPadDriver
from device.drivers.polled_serial import PolledSerial
from device.drivers.receipt_printer import ReceiptPrinterDriver
from device.host_client import HostClient
from device.journal import Journal
from device.screens import DEFAULT_SCREENS, RenderedScreen, load_screens
from device.sim.virtual_deadlines import VirtualDeadlines
from device.stan_counter import StanCounter
from peripherals.cards import load_wallet
from peripherals.harness.bay import DeviceBay
from peripherals.harness.profile import AtmProfile, load_profile
from peripherals.links.runner import LinkRunner

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.0
POLL_SECONDS = 0.001
# A pty hands bytes over within tens of microseconds of the write: waiting a whole poll for them
# was most of the time a key press took to reach the ATM.
IN_FLIGHT_SECONDS = 0.0001
SHORT_WAITS = 5
DEVICE_NAMES = ("card_reader", "pin_pad", "cash_dispenser", "receipt_printer")  # as _drivers


class AtmRunError(RuntimeError):
    """The simulated ATM did not reach what a script waited for."""


@dataclass(frozen=True)
class HostAddress:
    host: str
    port: int
    mac_key: bytes


class SimulatedAtm:
    """Build with `SimulatedAtm(profile, host, state_dir)`, then `start()`, drive, `stop()`."""

    def __init__(
        self,
        profile: AtmProfile | Path | str | None,
        host: HostAddress,
        state_dir: Path,
        *,
        clock: Clock | None = None,
        session_timeout_seconds: float = 120.0,
        host_timeout: float = 10.0,
        settle_seconds: float = SETTLE_SECONDS,
        virtual_deadlines: bool = False,
    ) -> None:
        if not isinstance(profile, AtmProfile):
            profile = load_profile(profile) if profile is not None else None
        self.clock: Clock = clock or SystemClock()
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.bay = DeviceBay.from_profile(
            profile, state_dir=state_dir / "devices", clock=self.clock.monotonic
        )
        assert self.bay.profile is not None
        self.profile = self.bay.profile
        self.terminal_id = self.profile.terminal_id
        wallet_path = self.profile.devices["card_reader"].settings.get("wallet")
        # The profile has already resolved the wallet path and checked that the file exists.
        self.wallet = load_wallet(Path(wallet_path)) if wallet_path else {}
        self.host_address = host
        self.host_timeout = host_timeout
        self.session_timeout_seconds = session_timeout_seconds
        self.settle_seconds = settle_seconds
        # Drivers' deadlines on the virtual clock (device/sim/virtual_deadlines.py): for an ATM
        # that owns its clock, as a scenario's does; a fleet's ATMs share one.
        self.virtual_deadlines = virtual_deadlines and isinstance(self.clock, VirtualClock)
        self.screens_shown: list[RenderedScreen] = []
        self._controller: AtmController | None = None
        self._drivers: list[Any] = []
        self._runners: list[LinkRunner] = []  # each driver's link, in the order of _drivers
        self._host_client: HostClient | None = None
        self._journal: Journal | None = None

    # ----- life -------------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Start the devices and the controller; returns what power-failure recovery did."""
        self.bay.start()
        try:
            return self._start_controller()
        except BaseException:
            self.stop()
            raise

    def _start_controller(self) -> list[str]:
        card_reader = CardReaderDriver(self.bay.url("card_reader"))
        pin_pad = PinPadDriver(self.bay.url("pin_pad"))
        dispenser = CashDispenserDriver(self.bay.url("cash_dispenser"))
        printer = ReceiptPrinterDriver(self.bay.url("receipt_printer"))
        self._drivers = [card_reader, pin_pad, dispenser, printer]
        self._runners = [self.bay.runner(name) for name in DEVICE_NAMES]
        for runner, driver in zip(self._runners, self._drivers, strict=True):
            runner.count_from(driver.port.in_waiting)
            if (
                self.virtual_deadlines
                and isinstance(self.clock, VirtualClock)
                and isinstance(driver, SerialDriver)
                and isinstance(driver.port, PolledSerial)
            ):
                driver.deadlines = VirtualDeadlines(self.clock, runner, driver.port)
        card_reader.initialise()
        self._host_client = HostClient(
            self.host_address.host,
            self.host_address.port,
            self.terminal_id,
            self.host_address.mac_key,
            timeout=self.host_timeout,
            clock=self.clock,
            stan=StanCounter(self.state_dir / "stan"),
            connect_attempts=1,
        )
        self._journal = Journal(self.state_dir / "journal.jsonl", self.clock.now)
        pin_format = int(self.profile.devices["pin_pad"].settings.get("pin_block_format", 0))
        self._controller = AtmController(
            card_reader=card_reader,
            pin_pad=pin_pad,
            dispenser=dispenser,
            printer=printer,
            host=self._host_client,
            journal=self._journal,
            advices=AdviceQueue(self.state_dir / "advices.jsonl"),
            screens=load_screens(DEFAULT_SCREENS),
            clock=self.clock,
            config=ControllerConfig(
                terminal_id=self.terminal_id,
                session_timeout_seconds=self.session_timeout_seconds,
                pin_block_format=pin_format,
            ),
            plan_notes=plan_notes,
        )
        self._controller.screen_listeners.append(self.screens_shown.append)
        return self._controller.start()

    def stop(self) -> None:
        """Close drivers, host link, devices and journal; safe to call twice."""
        for driver in self._drivers:
            try:
                driver.close()
            except Exception as err:  # closing must go on for the other devices
                log.warning("closing %s: %s", type(driver).__name__, err)
        self._drivers = []
        self._runners = []
        if self._host_client is not None:
            self._host_client.close()
            self._host_client.stan.close()
            self._host_client = None
        self.bay.stop()
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def successor(self) -> SimulatedAtm:
        """A new, unstarted ATM on this one's profile, host, state and clock: what comes up
        when the power returns. Stop this one first."""
        return SimulatedAtm(
            self.profile,
            self.host_address,
            self.state_dir,
            clock=self.clock,
            session_timeout_seconds=self.session_timeout_seconds,
            host_timeout=self.host_timeout,
            settle_seconds=self.settle_seconds,
            virtual_deadlines=self.virtual_deadlines,
        )

    def __enter__(self) -> SimulatedAtm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- running ----------------------------------------------------------------------------

    @property
    def controller(self) -> AtmController:
        if self._controller is None:
            raise AtmRunError("the ATM is not started")
        return self._controller

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise AtmRunError("the ATM is not started")
        return self._journal

    def settle(self, limit: float = 2.0) -> None:
        """Step until the ATM and its devices are at rest: twice running, a step that changes
        neither state nor screen, a pass of every link (`LinkRunner.pump`) after which no byte
        is on its way or waiting at a driver. Then nothing happens until a customer acts or a
        timer runs out. A `settle_seconds` above 0 keeps the older rule instead, state and
        screen unchanged that long (fleets and chaos runs use it; their robots wait for what
        they need and so tolerate an early return)."""
        deadline = time.monotonic() + limit
        quiet_since = time.monotonic()
        seen = (self.controller.state, self.controller.screen)
        at_rest = in_flight = 0
        while time.monotonic() < deadline:
            self.controller.step()
            now_seen = (self.controller.state, self.controller.screen)
            if now_seen != seen:
                seen, quiet_since, at_rest = now_seen, time.monotonic(), 0
                continue
            if self.settle_seconds:
                if time.monotonic() - quiet_since >= self.settle_seconds:
                    return
                time.sleep(POLL_SECONDS)
                continue
            for runner, driver in zip(self._runners, self._drivers, strict=True):
                # what a device does by itself is on its way before we look; a link whose
                # device has handled every byte and has nothing to time needs no pass
                port = driver.port
                if not (isinstance(port, PolledSerial) and runner.handled(port.sent)):
                    runner.pump()
            if self._bytes_in_flight():
                # Bytes on their way: let them arrive (and other ATMs of a fleet run) before
                # stepping again, rather than spinning on the controller. A few short waits
                # first; bytes paced at a baud rate take longer, and get whole polls.
                in_flight += 1
                at_rest = 0
                time.sleep(IN_FLIGHT_SECONDS if in_flight <= SHORT_WAITS else POLL_SECONDS)
                continue
            in_flight = 0
            at_rest += 1
            if at_rest >= 2:
                return

    def _bytes_in_flight(self) -> bool:
        """Whether a byte is on its way on any link or waits unread at a driver. A pty hands
        bytes to the other end a moment after the write, so on a pty the counts of both ends
        are compared rather than trusting what is readable at this instant; equal counts also
        mean that nothing waits unread, so the port is not asked."""
        for runner, driver in zip(self._runners, self._drivers, strict=True):
            port = driver.port
            if isinstance(port, PolledSerial):
                if runner.bytes_to_driver != port.received or port.sent != runner.bytes_from_driver:
                    return True
            elif port.in_waiting:
                return True
        return False

    def run_until(self, done: Callable[[], bool], seconds: float, what: str) -> None:
        """Step until `done()`; on the virtual clock, jump to the controller's next timer
        whenever nothing else is happening, as a discrete-event simulation does.
        """
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() >= deadline:
                raise AtmRunError(
                    f"waited {seconds:g} s for {what}; the ATM is in {self.controller.state} "
                    f"showing {self.controller.screen.name!r}"
                )
            self.settle()
            if not done() and not self.jump_to_next_timer():
                time.sleep(POLL_SECONDS)  # at rest: what is awaited comes in real time

    def jump_to_next_timer(self, otherwise: float | None = None) -> bool:
        """On the virtual clock, move time to when the controller acts by itself next (or on by
        `otherwise` seconds if it has no timer), as a discrete-event simulation does. False on
        the system clock, or with no timer and no `otherwise`."""
        if not isinstance(self.clock, VirtualClock):
            return False
        timer = self.controller.next_deadline
        if timer is not None:
            self.clock.advance(max(timer - self.clock.monotonic(), 0.0))
        elif otherwise is not None:
            self.clock.advance(otherwise)
        else:
            return False
        return True

    # ----- the customer's side (satisfies customer_script.Customer) ----------------------------

    def insert_card(self, card_id: str) -> None:
        card = self.wallet.get(card_id)
        if card is None:
            known = ", ".join(sorted(self.wallet))
            raise AtmRunError(f"no card {card_id!r} in the wallet; cards: {known}")
        self.bay.card_reader.insert_card(card)
        self.settle()

    def press(self, key: str) -> None:
        self.bay.pin_pad.press(key)
        self.settle()

    def take(self, item: str) -> None:
        if item == "card":
            self.bay.card_reader.take_card()
        elif item == "cash":
            self.bay.cash_dispenser.take_cash()
        self.settle()

    def wait_for_state(self, state: str, seconds: float) -> None:
        self.run_until(lambda: self.controller.state == state, seconds, f"state {state}")
        self.settle()

    def advance(self, seconds: float) -> None:
        if not isinstance(self.clock, VirtualClock):
            raise AtmRunError("advance needs the virtual clock (--virtual-clock)")
        self.clock.advance(seconds)
        self.settle()

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def receipts(self) -> list[str]:
        return [receipt.text for receipt in self.bay.receipt_printer.receipts]
