"""The ATM lab: simulated ATMs hosted by the service, built as `atm-sim atm run` builds one
(devices on ptys, drivers, journal, controller) behind a host proxy that can play a failing host.

Each lab ATM steps its controller in a thread of its own; every action takes the ATM's lock.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime as dt
import enum
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from config.card_numbers import mask_pan
from config.data_files import DataFileError
from config.settings import Settings
from device.clock import Clock, SystemClock, VirtualClock
from device.controller.atm_controller import SupervisorError
from device.controller.ports import DriverError
from device.sim.api import lab_faults
from device.sim.scenarios.host_faults import HostFaultProxy
from device.sim.simulated_atm import AtmRunError, HostAddress, SimulatedAtm
from peripherals.card_reader import CardHandlingError
from peripherals.harness.fault_board import ArmedFault
from peripherals.harness.profile import PROJECT_ROOT, AtmProfile, load_profile

log = logging.getLogger(__name__)

PROFILE_DIR = PROJECT_ROOT / "config" / "atm_profiles"
STEP_INTERVAL_SECONDS = 0.02  # the background stepper polls the devices 50 times a second
HOST_TIMEOUT_SECONDS = 10.0
MAX_WAIT_SECONDS = 30.0
PAN_LIKE = re.compile(r"\b\d{13,19}\b")
T = TypeVar("T")


class LabError(Exception):
    """A lab request that cannot be carried out; `status` is the HTTP status it maps to."""

    status = 409

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LabNotFound(LabError):
    status = 404


class LabInputError(LabError):
    """Input the lab cannot use: `field` names it (422)."""

    status = 422


def profile_names() -> list[str]:
    """The ATM profiles a lab ATM can be built from (config/atm_profiles/*.yaml)."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))


def json_safe(value: Any) -> Any:
    """Device and journal data as JSON: bytes as hex, enums as values, card numbers masked."""
    if isinstance(value, str):
        return PAN_LIKE.sub(lambda m: mask_pan(m.group(0)), value)
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    if isinstance(value, dt.datetime | dt.date | Path):
        return str(value)
    return json_safe(str(value))


@dataclass(frozen=True)
class LabAtmSpec:
    profile: str = "default"
    host: tuple[str, int] | None = None  # None: this service's host, else the profile's
    virtual_clock: bool = False
    auto_step: bool = True


class LabAtm:
    """One hosted ATM: its simulator, host proxy and stepping thread."""

    def __init__(
        self,
        spec: LabAtmSpec,
        profile: AtmProfile,
        settings: Settings,
        upstream: tuple[str, int],
        state_root: Path,
    ) -> None:
        assert profile.host is not None
        self.spec = spec
        self.profile_name = spec.profile
        self.terminal_id = profile.terminal_id
        self.upstream = upstream
        self.created_at = dt.datetime.now(dt.UTC)
        self.clock: Clock = VirtualClock() if spec.virtual_clock else SystemClock()
        mac_key = binascii.unhexlify(profile.host.mac_key)
        self.proxy = HostFaultProxy(
            upstream, clock=self.clock, mac_key=mac_key, atm_host_timeout=HOST_TIMEOUT_SECONDS
        )
        self.sim = SimulatedAtm(
            profile,
            HostAddress("127.0.0.1", 0, mac_key),
            state_root / self.terminal_id,
            clock=self.clock,
            session_timeout_seconds=settings.session_timeout_seconds,
            host_timeout=HOST_TIMEOUT_SECONDS,
        )
        self.lock = threading.RLock()
        self.receipts_taken = 0
        self.recovery_report: list[str] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_step_error = ""

    # ----- life -------------------------------------------------------------------------------

    def start(self) -> None:
        port = self.proxy.start()
        self.sim.host_address = dataclasses.replace(self.sim.host_address, port=port)
        try:
            self.recovery_report = self.sim.start()
        except BaseException:
            self.proxy.stop()
            raise
        if self.spec.auto_step:
            self._thread = threading.Thread(
                target=self._step_forever, name=f"lab-{self.terminal_id}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with self.lock:
            self.sim.stop()
        self.proxy.stop()

    def _step_forever(self) -> None:
        while not self._stopping.wait(STEP_INTERVAL_SECONDS):
            with self.lock:
                if self._stopping.is_set():
                    return
                try:
                    self.sim.controller.step()
                    self._last_step_error = ""
                except Exception as err:  # the ATM stays hosted whatever one step does
                    text = f"{type(err).__name__}: {err}"
                    if text != self._last_step_error:
                        log.exception("lab ATM %s: a controller step failed", self.terminal_id)
                        self._last_step_error = text

    def _locked(self, action: Callable[[], T]) -> T:
        """Run an action under the ATM's lock, turning device and state refusals into LabErrors."""
        with self.lock:
            if self._stopping.is_set():
                raise LabNotFound(f"lab ATM {self.terminal_id} has been stopped")
            try:
                return action()
            except (SupervisorError, AtmRunError, CardHandlingError) as err:
                raise LabError(str(err)) from err
            except DriverError as err:
                raise LabError(f"the device did not do it: {err}") from err

    # ----- views ------------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        controller = self.sim.controller
        screen = controller.screen
        connected = getattr(controller.host, "connected", None)
        return {
            "terminal_id": self.terminal_id,
            "profile": self.profile_name,
            "state": controller.state,
            "screen": {
                "name": screen.name,
                "lines": json_safe(list(screen.lines)),
                "keys": {key: spec.label for key, spec in sorted(screen.keys.items())},
            },
            "out_of_service_reason": (
                controller.out_of_service_reason if controller.state == "out_of_service" else ""
            ),
            "cash_available": controller.cash_available,
            "receipts_available": controller.receipts_available,
            "host": {
                "address": self.upstream[0],
                "port": self.upstream[1],
                "connected": bool(connected) if connected is not None else None,
                "fault": lab_faults.describe_host(self.proxy.behaviour)
                if self.proxy.behaviour.mode != "up"
                else None,
            },
            "advices_pending": len(controller.advices.pending()),
            "clock": "virtual" if self.spec.virtual_clock else "system",
            "clock_seconds": round(self.clock.monotonic(), 3) if self.spec.virtual_clock else None,
            "auto_step": self.spec.auto_step,
            "receipts_waiting": max(len(self.sim.receipts()) - self.receipts_taken, 0),
            "recovery_report": json_safe(self.recovery_report),
            "created_at": self.created_at,
        }

    def devices(self) -> dict[str, Any]:
        bay = self.sim.bay
        return {name: json_safe(bay.emulator(name).status()) for name in bay.names}

    def journal_tail(self, count: int) -> list[dict[str, Any]]:
        return [
            {"seq": e.seq, "at": e.at, "event": e.event, "fields": json_safe(e.fields)}
            for e in self.sim.journal.tail(count)
        ]

    def receipts(self) -> list[str]:
        return [json_safe(text) for text in self.sim.receipts()]

    # ----- faults -----------------------------------------------------------------------------

    def fault_catalogue(self) -> list[dict[str, Any]]:
        return json_safe(lab_faults.catalogue(self.sim.bay))  # type: ignore[no-any-return]

    def inject(
        self, target: str, fault: str, mode: str, on_command: int, params: Mapping[str, Any]
    ) -> str:
        def arm() -> str:
            try:
                return lab_faults.inject(
                    self.sim.bay,
                    self.proxy,
                    target,
                    fault,
                    mode=mode,
                    on_command=on_command,
                    params=params,
                )
            except lab_faults.FaultInputError as err:
                raise LabInputError(str(err), err.field) from err

        return self._locked(arm)

    def clear(self, target: str | None, fault: str | None) -> None:
        def clear() -> None:
            try:
                lab_faults.clear(self.sim.bay, self.proxy, target, fault)
            except lab_faults.FaultInputError as err:
                raise LabInputError(str(err), err.field) from err

        self._locked(clear)

    def faults(self) -> list[ArmedFault]:
        return lab_faults.armed(self.sim.bay, self.proxy)

    # ----- the customer -----------------------------------------------------------------------

    def insert_card(self, card: str) -> str:
        if card not in self.sim.wallet:
            known = ", ".join(sorted(self.sim.wallet))
            raise LabInputError(f"no card {card!r} in the wallet; cards: {known}", "card")
        self._locked(lambda: self.sim.insert_card(card))
        return f"card {card} inserted"

    def press(self, keys: list[str]) -> str:
        def press_all() -> None:
            for key in keys:
                self.sim.press(key)

        self._locked(press_all)
        # Digits are never echoed: during PIN entry they are the PIN.
        shown = ["*" if key.isdigit() else key for key in keys]
        return f"pressed {' '.join(shown)}"

    def take(self, item: str) -> tuple[str, str | None]:
        """Take the card, the cash or the next receipt; the receipt's text comes back."""

        def take() -> tuple[str, str | None]:
            bay = self.sim.bay
            if item == "card":
                bay.card_reader.take_card()
                self.sim.settle()
                return "card taken", None
            if item == "cash":
                amount = int(bay.cash_dispenser.take_cash())
                if not amount:
                    raise LabError("no cash is presented to take")
                self.sim.settle()
                return f"cash taken ({amount} notes)", None
            receipts = self.sim.receipts()
            if self.receipts_taken >= len(receipts):
                raise LabError("no receipt is waiting to be taken")
            text = receipts[self.receipts_taken]
            self.receipts_taken += 1
            return "receipt taken", json_safe(text)

        return self._locked(take)

    def wait(self, state: str, seconds: float) -> str:
        self._locked(lambda: self.sim.wait_for_state(state, min(seconds, MAX_WAIT_SECONDS)))
        return f"reached {state}"

    def advance(self, seconds: float) -> str:
        if not self.spec.virtual_clock:
            raise LabError("advance needs a lab ATM made with clock: virtual")
        self._locked(lambda: self.sim.advance(seconds))
        return f"virtual clock moved {seconds:g} s"

    def step(self, count: int) -> str:
        def step() -> None:
            for _ in range(count):
                self.sim.controller.step()

        self._locked(step)
        return f"{count} controller step(s)"

    # ----- the operator -----------------------------------------------------------------------

    def operate(self, action: str, cassettes: Mapping[int, int] | None = None) -> str:
        controller = self.sim.controller
        bay = self.sim.bay

        def out_of_service() -> str:
            now = controller.set_out_of_service(True)
            self.sim.settle()
            return "out of service" if now else "out of service once the customer has finished"

        def in_service() -> str:
            controller.set_out_of_service(False)
            self.sim.settle()
            return f"back in service when its self-test passes (now {controller.state})"

        def supervisor() -> str:
            if not controller.open_supervisor():
                raise LabError(
                    f"supervisor mode needs the ATM idle or out of service ({controller.state})"
                )
            self.sim.settle()
            return "supervisor mode"

        def leave_supervisor() -> str:
            if not controller.close_supervisor():
                raise LabError(f"the ATM is not in supervisor mode ({controller.state})")
            self.sim.settle()
            return f"left supervisor mode (now {controller.state})"

        def replenish() -> str:
            views = {c.number: c for c in bay.cash_dispenser.cassettes}
            counts = dict(cassettes or {})
            for number, count in counts.items():
                view = views.get(number)
                if view is None:
                    raise LabInputError(
                        f"no cassette {number}; cassettes: {', '.join(map(str, views))}",
                        "cassettes",
                    )
                if not 0 <= count <= view.capacity:
                    raise LabInputError(
                        f"cassette {number} takes 0 to {view.capacity} notes, not {count}",
                        "cassettes",
                    )
            counts = counts or {n: v.capacity for n, v in views.items()}
            controller.replenish(counts)
            return "cassettes set: " + ", ".join(f"{n}: {c}" for n, c in sorted(counts.items()))

        def purge() -> str:
            return f"{controller.purge_dispenser()} notes purged to the reject bin"

        def remove_card() -> str:
            if controller.state != "supervisor":
                raise LabError("removing a card needs supervisor mode")
            removed = bay.card_reader.remove_card()
            controller.card_removed()
            return f"card {removed} removed from the reader" if removed else "no card was inside"

        def load_paper() -> str:
            bay.receipt_printer.load_paper()
            return "new paper roll loaded"

        def empty_retain_bin() -> str:
            return f"{bay.card_reader.empty_retain_bin()} cards taken from the retain bin"

        actions: dict[str, Callable[[], str]] = {
            "out-of-service": out_of_service,
            "in-service": in_service,
            "supervisor": supervisor,
            "leave-supervisor": leave_supervisor,
            "replenish": replenish,
            "purge": purge,
            "remove-card": remove_card,
            "load-paper": load_paper,
            "empty-retain-bin": empty_retain_bin,
        }
        chosen = actions.get(action)
        if chosen is None:
            raise LabInputError(
                f"unknown operator action {action!r}; actions: {', '.join(actions)}", "action"
            )
        return self._locked(chosen)


class Lab:
    """The lab ATMs of one service, by terminal id."""

    def __init__(
        self, settings: Settings, *, default_host: tuple[str, int] | None, state_root: Path
    ) -> None:
        self.settings = settings
        self.default_host = default_host
        self.state_root = state_root
        self._atms: dict[str, LabAtm] = {}
        self._starting: set[str] = set()
        self._lock = threading.Lock()

    def create(self, spec: LabAtmSpec) -> LabAtm:
        if spec.profile not in profile_names():
            raise LabInputError(
                f"no ATM profile {spec.profile!r}; profiles: {', '.join(profile_names())}",
                "profile",
            )
        try:
            profile = load_profile(PROFILE_DIR / f"{spec.profile}.yaml")
        except DataFileError as err:
            raise LabInputError(str(err), "profile") from err
        if profile.host is None:
            raise LabInputError(f"profile {spec.profile}: it names no host", "profile")
        upstream = spec.host or self.default_host or (profile.host.address, profile.host.port)
        terminal = profile.terminal_id
        with self._lock:
            if terminal in self._atms or terminal in self._starting:
                raise LabError(
                    f"lab ATM {terminal} is running already; stop it first or use another profile"
                )
            self._starting.add(terminal)
        try:
            atm = LabAtm(spec, profile, self.settings, upstream, self.state_root)
            atm.start()
        except LabError:
            raise
        except Exception as err:
            raise LabError(f"lab ATM {terminal} could not start: {err}") from err
        finally:
            with self._lock:
                self._starting.discard(terminal)
        with self._lock:
            self._atms[terminal] = atm
        log.info("lab ATM %s started (profile %s)", terminal, spec.profile)
        return atm

    def get(self, terminal_id: str) -> LabAtm:
        with self._lock:
            atm = self._atms.get(terminal_id)
        if atm is None:
            raise LabNotFound(f"no lab ATM {terminal_id!r}; see GET /lab/atms")
        return atm

    def atms(self) -> list[LabAtm]:
        with self._lock:
            return [self._atms[t] for t in sorted(self._atms)]

    def stop(self, terminal_id: str) -> None:
        with self._lock:
            atm = self._atms.pop(terminal_id, None)
        if atm is None:
            raise LabNotFound(f"no lab ATM {terminal_id!r}; see GET /lab/atms")
        atm.stop()
        log.info("lab ATM %s stopped", terminal_id)

    def stop_all(self) -> None:
        for atm in self.atms():
            try:
                self.stop(atm.terminal_id)
            except LabNotFound:
                continue
