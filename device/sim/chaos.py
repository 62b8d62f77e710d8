"""The fleet under random faults: device and link faults through each bay, host faults through
a proxy per ATM, power cuts mid-session with a restart on the same state; invariants checked.

Customers arrive with gaps of virtual time, and the bank reads the latest of the ATMs' virtual
clocks, so lockouts end and days turn over; an engineer empties the retain bins at each check.
"""

from __future__ import annotations

import binascii
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings
from device.clock import VirtualClock
from device.sim.fleet.cli import fleet_bank, run_directory
from device.sim.fleet.in_process import TEST_MAC_KEY, AtmSlot, Fleet, FleetConfig
from device.sim.fleet.robot_customer import (
    HEALTH_CHECK_SECONDS,
    CrashNow,
    FleetError,
    SessionDriver,
    SessionPlan,
    SessionResult,
    classify,
    journal_since,
    last_seq,
)
from device.sim.invariants import Check
from device.sim.scenarios.host_faults import HostBehaviour, HostFaultProxy
from device.sim.simulated_atm import HostAddress

log = logging.getLogger(__name__)

BankClock = Callable[[], dt.datetime]

# (target, fault, params, mode): faults a device shows for one session, cleared after it.
DEVICE_FAULTS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("card_reader", "unreadable_track", {"track": 2, "damage": "parity"}, "once"),
    ("card_reader", "card_too_short", {}, "once"),
    ("card_reader", "card_pulled_out", {}, "once"),
    ("card_reader", "power_down", {}, "once"),
    ("card_reader", "jam", {}, "once"),
    ("pin_pad", "unresponsive", {}, "persistent"),
    ("pin_pad", "tamper", {}, "persistent"),
    ("cash_dispenser", "jam", {"after_notes": 1}, "once"),
    ("cash_dispenser", "jam", {"after_notes": 0}, "once"),
    ("cash_dispenser", "double_pick", {"count": 1}, "once"),
    ("cash_dispenser", "cassette_empty", {"cassette": 1}, "persistent"),
    ("cash_dispenser", "cassette_missing", {"cassette": 2}, "persistent"),
    ("cash_dispenser", "shutter_jam", {}, "persistent"),
    ("cash_dispenser", "notes_not_taken", {}, "persistent"),
    ("cash_dispenser", "unresponsive", {}, "persistent"),
    ("receipt_printer", "paper_out", {}, "persistent"),
    ("receipt_printer", "jam", {}, "once"),
    ("receipt_printer", "cover_open", {}, "persistent"),
    ("receipt_printer", "unresponsive", {}, "persistent"),
)
LINK_FAULTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("drop", {}),
    ("delay", {"seconds": 0.2}),
    ("corrupt", {}),
    ("split", {"gap": 0.02}),
)
DEVICES = ("card_reader", "pin_pad", "cash_dispenser", "receipt_printer")
HOST_FAULTS: tuple[HostBehaviour, ...] = (
    HostBehaviour("down"),
    HostBehaviour("down", how="close"),
    HostBehaviour("slow", seconds=0.5),
    HostBehaviour("slow", seconds=30.0, count=1),
    HostBehaviour("declining", code="91", count=1),
    HostBehaviour("declining", code="05", count=1),
    HostBehaviour("reply_lost", count=1),
    HostBehaviour("connection_dropped", count=1),
)
# Shares of the kinds of trouble a session meets; the rest of the sessions go well.
SHARES = (("device", 0.25), ("link", 0.15), ("host", 0.15), ("crash", 0.08))
FIRST_EVENTS = ("host", "crash", "device")  # every run shows these at least once
# Virtual seconds between two customers at one ATM (exponential, capped): time for a PIN lockout
# (1800 s) to end and for the daily limits to start again on a new day in a long run.
ARRIVAL_MEAN_SECONDS = 90.0
ARRIVAL_MAX_SECONDS = 900.0
# Generated customers per session when the run is not told: enough that few of them reach their
# daily limit or an empty account, so most sessions move money.
SESSIONS_PER_CUSTOMER = 10
MIN_CUSTOMERS = 20
# The run's own throwaway bank hashes PINs at this cost at most: at the default 12 each card
# request spends about 0.2 s of CPU on bcrypt, and on a busy machine most sessions would then
# end "host unavailable" instead of exercising the money path.
CHAOS_BCRYPT_ROUNDS = 4
CHAOS_HOST_TIMEOUT = 2.0
# All ATMs of a chaos run share one process, and under the GIL the host's answers queue behind
# every other ATM's work: the ATMs wait longer the more of them there are, so that a busy
# machine is not mistaken for a host fault (20 ATMs with 2 s: two thirds "host unavailable").
CHAOS_HOST_TIMEOUT_PER_ATM = 0.25


def chaos_host_timeout(atms: int) -> float:
    return max(CHAOS_HOST_TIMEOUT, CHAOS_HOST_TIMEOUT_PER_ATM * atms)


def chaos_customers(sessions: int) -> int:
    return max(MIN_CUSTOMERS, sessions // SESSIONS_PER_CUSTOMER)


@dataclass(frozen=True)
class ChaosEvent:
    """What goes wrong in one session, and before which customer action (0: before the card)."""

    kind: str  # none | device | link | host | crash
    at_action: int = 0
    target: str = ""
    fault: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "persistent"
    host: HostBehaviour | None = None

    def describe(self) -> str:
        if self.kind == "host" and self.host is not None:
            extra = f" {self.host.seconds:g} s" if self.host.mode == "slow" else ""
            return f"host {self.host.mode}{extra}"
        if self.kind in ("device", "link"):
            return f"{self.target} {self.fault}"
        return self.kind


def plan_event(rng: random.Random, kind: str | None = None) -> ChaosEvent:
    if kind is None:
        roll, kind = rng.random(), "none"
        for name, share in SHARES:
            if roll < share:
                kind = name
                break
            roll -= share
    at = rng.randrange(0, 9)
    if kind == "device":
        target, fault, params, mode = rng.choice(DEVICE_FAULTS)
        return ChaosEvent(kind, at, target, fault, dict(params), mode)
    if kind == "link":
        fault, params = rng.choice(LINK_FAULTS)
        return ChaosEvent(kind, max(at, 1), f"{rng.choice(DEVICES)}.link", fault, dict(params))
    if kind == "host":
        return ChaosEvent(kind, at, host=rng.choice(HOST_FAULTS))
    if kind == "crash":
        return ChaosEvent(kind, rng.randrange(2, 12))
    return ChaosEvent("none")


def plan_chaos(atms: int, per_atm: list[int], seed: int) -> list[list[ChaosEvent]]:
    """One event per session of each ATM, from the seed and the ATM's index only."""
    events = []
    for index, count in enumerate(per_atm):
        rng = random.Random(f"chaos:{seed}:{index}")
        events.append([plan_event(rng) for _ in range(count)])
    for position, kind in enumerate(FIRST_EVENTS):
        index, number = position % atms, position // atms
        if number < len(events[index]):
            rng = random.Random(f"chaos:{seed}:first:{position}")
            event = plan_event(rng, kind)
            if kind == "host":
                event = ChaosEvent("host", 0, host=HostBehaviour("down"))  # a real outage
            elif kind == "crash":
                # Before the customer's 6th action: a withdrawal has its notes counted and the
                # card out; every kind of session that got past the PIN gets that far.
                event = ChaosEvent("crash", 5)
            events[index][number] = event
    return events


def plan_run(
    atms: int, sessions: int, seed: int
) -> tuple[list[list[ChaosEvent]], list[random.Random]]:
    """Every ATM's events and arrival gaps, dealt as plan_fleet deals the sessions; a shard of a
    distributed run takes its ATMs' rows, so each ATM meets what it would in one process."""
    per_atm = [sessions // atms + (1 if i < sessions % atms else 0) for i in range(atms)]
    arrivals = [random.Random(f"arrivals:{seed}:{i}") for i in range(atms)]
    return plan_chaos(atms, per_atm, seed), arrivals


class ChaosFleet(Fleet):
    """A Fleet whose ATMs each reach the bank through a HostFaultProxy, with faults per session."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proxies: list[HostFaultProxy] = []
        self.events: list[list[ChaosEvent]] = []
        self.arrivals: list[random.Random] = []
        self.applied: Counter[str] = Counter()
        self.kinds_applied: Counter[str] = Counter()
        self.reboots: Counter[str] = Counter()  # out of service after the faults were cleared
        self.cards_retrieved = 0  # from the retain bins, at the engineer's visits
        # Every ATM's virtual clock starts now, so the bank's time never goes back when it
        # starts following them.
        self.epoch = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._bank_clocks: tuple[BankClock, BankClock] | None = None

    def make_slot(self, index: int, terminal_id: str) -> AtmSlot:
        assert self.population is not None
        clock = VirtualClock(self.epoch)
        proxy = HostFaultProxy(
            ("127.0.0.1", self.bank.server.port),
            clock=clock,
            mac_key=binascii.unhexlify(TEST_MAC_KEY),
            atm_host_timeout=self.config.host_timeout,
        )
        self.proxies.append(proxy)
        port = proxy.start()
        return AtmSlot(
            terminal_id,
            self.run_dir / "atms" / terminal_id,
            self.population.wallet_path,
            HostAddress("127.0.0.1", port, binascii.unhexlify(TEST_MAC_KEY)),
            settle_seconds=self.config.settle_seconds,
            host_timeout=self.config.host_timeout,
            clock=clock,
            link_backend=self.config.link_backend,
        )

    def __enter__(self) -> ChaosFleet:
        super().__enter__()
        if self._bank is None:  # a shard of a distributed run: the bank keeps its own time
            return self
        # The bank on the ATMs' time: a lockout ends, daily limits start again on a new day.
        bank = self.bank
        self._bank_clocks = (bank.bank.clock, bank.server.now)
        bank.bank.clock = self.fleet_now
        bank.server.now = self.fleet_now
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bank_clocks is not None:
            self.bank.bank.clock, self.bank.server.now = self._bank_clocks
            self._bank_clocks = None
        super().__exit__(*exc)
        for proxy in self.proxies:
            proxy.stop()

    def fleet_now(self) -> dt.datetime:
        """The bank's time: the latest of the ATMs' virtual clocks (each ATM's clock moves on
        its own between checks, where all are brought to the latest)."""
        return max((slot.clock.now() for slot in self.slots), default=self.epoch)

    def _align_clocks(self) -> None:
        latest = max(slot.clock.monotonic() for slot in self.slots)
        for slot in self.slots:
            slot.clock.advance(latest - slot.clock.monotonic())

    def run(self) -> Any:
        assert self.population is not None
        config = self.config
        self.events, self.arrivals = plan_run(config.atms, config.sessions, config.seed)
        return super().run()

    def checkpoint(self, label: str, *, final: bool = False) -> list[Check]:
        """The engineer's round before the check: every ATM on the latest time, retain bins
        emptied through the card readers' operator API (a full bin would refuse captures)."""
        self._align_clocks()
        for slot in self.slots:
            with contextlib.suppress(ValueError, RuntimeError):
                self.cards_retrieved += int(slot.atm.bay.card_reader.empty_retain_bin())
        return super().checkpoint(label, final=final)

    # ----- one session under a fault -----------------------------------------------------------

    def run_session(self, slot: AtmSlot, plan: SessionPlan, number: int) -> SessionResult:
        index = self.slots.index(slot)
        event = self.events[index][number]
        proxy = self.proxies[index]
        gap = self.arrivals[index].expovariate(1 / ARRIVAL_MEAN_SECONDS)
        slot.clock.advance(min(gap, ARRIVAL_MAX_SECONDS))
        start_seq = last_seq(slot.atm)
        started = time.monotonic()
        crashed = False

        def before_action(action: int) -> None:
            if event.kind == "none" or action != event.at_action:
                return
            self._count(event)
            if event.kind == "crash":
                raise CrashNow
            self._apply(slot, proxy, event)

        try:
            self._prepare(slot)
            driver = SessionDriver(slot.atm, plan, before_action=before_action)
            try:
                driver.run()
            except CrashNow:
                crashed = True
                slot.crash_and_restart()
            outcome = classify(journal_since(slot.atm, start_seq))
        except Exception as err:  # the ATM application failed: its watchdog restarts it
            log.warning("%s: session %d met %s", slot.terminal_id, number, event.describe())
            outcome = self.failed(slot, number, err)
        finally:
            self._heal(slot, proxy)
        self.tidy(slot)
        self._reboot_if_out_of_service(slot)
        if crashed:
            outcome = f"power cut ({outcome})"
        return SessionResult(slot.terminal_id, plan.kind, outcome, time.monotonic() - started)

    def _reboot_if_out_of_service(self, slot: AtmSlot) -> None:
        """Faults cleared, yet the ATM stays out of service through its health checks: the
        engineer restarts it, and the reason goes into the report."""
        sim = slot.atm
        for _ in range(3):
            if sim.controller.state != "out_of_service":
                return
            slot.clock.advance(HEALTH_CHECK_SECONDS)
            sim.settle()
        with self._lock:
            self.reboots[sim.controller.out_of_service_reason] += 1
        slot.crash_and_restart()
        self.tidy(slot)

    def _count(self, event: ChaosEvent) -> None:
        with self._lock:
            self.kinds_applied[event.kind] += 1
            self.applied[event.describe()] += 1

    @staticmethod
    def _apply(slot: AtmSlot, proxy: HostFaultProxy, event: ChaosEvent) -> None:
        if event.kind == "host" and event.host is not None:
            proxy.set(event.host)
        elif event.kind == "device":
            slot.atm.bay.inject(event.target, event.fault, mode=event.mode, **event.params)
        elif event.kind == "link":
            slot.atm.bay.inject(event.target, event.fault, **event.params)

    @staticmethod
    def _heal(slot: AtmSlot, proxy: HostFaultProxy) -> None:
        """The engineer's visit after the session: the host is back, every fault cleared."""
        proxy.set(HostBehaviour())
        if slot.sim is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                slot.sim.bay.clear()

    def settle_all(self) -> int:
        """Faults cleared and host up; an ATM still out of service is restarted (it could not
        settle a deferred withdrawal otherwise); then every ATM settles what it can."""
        for slot, proxy in zip(self.slots, self.proxies, strict=True):
            self._heal(slot, proxy)
            with contextlib.suppress(FleetError):
                self._reboot_if_out_of_service(slot)
        return super().settle_all()

    def report_notes(self) -> list[str]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds_applied.items()))
        faults = ", ".join(f"{k} {n}" for k, n in sorted(self.applied.items()))
        notes = [*super().report_notes(), f"faults by kind: {kinds}", f"faults: {faults}"]
        notes += [
            f"restarted by the engineer x{n}, out of service after the faults were cleared: "
            f"{reason}"
            for reason, n in sorted(self.reboots.items())
        ]
        if self.slots:
            hours = self.slots[0].clock.monotonic() / 3600
            notes.append(
                f"virtual time {hours:.1f} h from {self.epoch:%Y-%m-%d %H:%M} UTC; "
                f"{self.cards_retrieved} card(s) taken from the retain bins"
            )
        return notes


def run_chaos(
    settings: Settings,
    *,
    atms: int,
    sessions: int,
    seed: int,
    customers: int | None = None,
    checks_every: int = 5,
    link_backend: str = "pty",
    out: Callable[[str], None] = print,
) -> int:
    """`atm-sim chaos`: 0 when every invariant held at every check, 1 otherwise."""
    settings = dataclasses.replace(
        settings, bcrypt_rounds=min(settings.bcrypt_rounds, CHAOS_BCRYPT_ROUNDS)
    )
    config = FleetConfig(
        atms=atms,
        sessions=sessions,
        seed=seed,
        customers=chaos_customers(sessions) if customers is None else customers,
        host_timeout=chaos_host_timeout(atms),
        checks_every=checks_every,
        link_backend=link_backend,
    )
    # Kept until the verdict: after a violation the journals, device state files and the bank's
    # data directory are what a person reads to find out what happened.
    with run_directory(keep=True) as run_dir:
        with fleet_bank(settings, run_dir) as bank:
            out(
                f"chaos: {atms} ATMs, {sessions} sessions, seed {seed}, "
                f"{config.customers} generated customers, bcrypt cost {settings.bcrypt_rounds}, "
                f"{link_backend} links"
            )
            with ChaosFleet(config, bank, run_dir, out=out) as fleet:
                report = fleet.run()
        out("summary:")
        for line in report.summary():
            out(f"  {line}")
        if report.ok:
            shutil.rmtree(run_dir, ignore_errors=True)
            return 0
        out(f"journals and device state kept in {run_dir} (atms/<terminal>/)")
        out(
            f"INVARIANT VIOLATED; replay with: atm-sim chaos --atms {atms} --sessions {sessions} "
            f"--seed {seed}" + (f" --link-backend {link_backend}" if link_backend != "pty" else "")
        )
        return 1
