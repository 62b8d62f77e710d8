"""The device bay: emulated devices built from an ATM profile, each joined to its own link.

Drivers open `bay.url(name)`; faults go through `bay.inject` / `bay.clear` / `bay.list`.
"""

from __future__ import annotations

import builtins
import importlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from config.data_files import DataFileError
from peripherals.emulator import Clock, Emulator
from peripherals.harness.fault_board import ArmedFault, FaultBoard
from peripherals.harness.profile import (
    DEFAULT_PROFILE,
    AtmProfile,
    LinkSettings,
    load_profile,
)
from peripherals.links.backends import check_backend, open_endpoint
from peripherals.links.endpoint import LinkClosed
from peripherals.links.runner import LinkRunner

# Imported only when a bay needs the device, so a bay of one device loads one module.
EMULATOR_CLASSES: Mapping[str, str] = {
    "card_reader": "peripherals.card_reader:CardReaderEmulator",
    "pin_pad": "peripherals.pin_pad:PinPadEmulator",
    "cash_dispenser": "peripherals.cash_dispenser:CashDispenserEmulator",
    "receipt_printer": "peripherals.receipt_printer:ReceiptPrinterEmulator",
}


class BayError(RuntimeError):
    """The bay cannot do what was asked (unknown device, not started, a link failed to open)."""


def emulator_class(name: str) -> type[Emulator]:
    """The emulator class of a device name, imported now."""
    try:
        module_name, class_name = EMULATOR_CLASSES[name].split(":")
    except KeyError:
        raise BayError(
            f"no emulator for device {name!r}; known: {', '.join(EMULATOR_CLASSES)}"
        ) from None
    try:
        cls: type[Emulator] = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise BayError(f"{name}: emulator {module_name}.{class_name} not available: {err}") from err
    return cls


def build_emulators(
    profile: AtmProfile, *, state_dir: Path | None = None, clock: Clock = time.monotonic
) -> dict[str, Emulator]:
    """One emulator per device section, built by its class's from_config."""
    emulators: dict[str, Emulator] = {}
    for name, section in profile.devices.items():
        device_dir = None
        if state_dir is not None:
            device_dir = state_dir / name
            device_dir.mkdir(parents=True, exist_ok=True)
        from_config: Callable[..., Emulator] = emulator_class(name).from_config  # type: ignore[attr-defined]
        try:
            emulators[name] = from_config(section.settings, clock=clock, state_dir=device_dir)
        except (ValueError, TypeError, KeyError, OSError) as err:
            raise DataFileError(profile.source, section.line, f"devices.{name}: {err}") from err
    return emulators


class DeviceBay:
    """Emulators on links. Start it (or use `with`), point drivers at `url(name)`, stop it."""

    def __init__(
        self,
        emulators: Mapping[str, Emulator],
        links: Mapping[str, LinkSettings] | None = None,
        *,
        backend: str | None = None,
        profile: AtmProfile | None = None,
    ) -> None:
        if backend is not None:
            check_backend(backend)
        self.profile = profile
        self._emulators = dict(emulators)
        self._links: dict[str, LinkSettings] = {}
        for name in self._emulators:
            settings = (links or {}).get(name, LinkSettings())
            if backend is not None:
                settings = LinkSettings(backend, settings.baud, settings.line_timing)
            self._links[name] = settings
        self._runners: dict[str, LinkRunner] = {}
        self._started = False
        self.faults = FaultBoard()
        for name, emulator in self._emulators.items():
            clear = getattr(emulator, "clear_fault", None)
            self.faults.add(name, emulator.faults, clear if callable(clear) else None)

    @classmethod
    def from_profile(
        cls,
        profile: AtmProfile | Path | str | None = None,
        *,
        backend: str | None = None,
        state_dir: Path | None = None,
        clock: Clock = time.monotonic,
    ) -> DeviceBay:
        """A bay of the profile's devices (default: config/atm_profiles/default.yaml)."""
        if not isinstance(profile, AtmProfile):
            profile = load_profile(DEFAULT_PROFILE if profile is None else profile)
        if state_dir is None:
            state_dir = profile.state_dir
        emulators = build_emulators(profile, state_dir=state_dir, clock=clock)
        links = {name: section.link for name, section in profile.devices.items()}
        return cls(emulators, links, backend=backend, profile=profile)

    # ----- life -------------------------------------------------------------------------------

    def start(self) -> DeviceBay:
        if self._started:
            raise BayError("the bay is already started")
        self._started = True
        try:
            for name, emulator in self._emulators.items():
                link = self._links[name]
                endpoint = open_endpoint(link.backend, name)
                try:
                    runner = LinkRunner(
                        emulator, endpoint, baud=link.baud, line_timing=link.line_timing
                    )
                except ValueError:
                    endpoint.close()
                    raise
                self._runners[name] = runner.start()
                self.faults.add(f"{name}.link", runner.faults)
        except (LinkClosed, OSError, ValueError) as err:
            self.stop()
            raise BayError(f"cannot open the links: {err}") from err
        return self

    def stop(self) -> None:
        """Stop every link (idempotent); drivers then see their port closed."""
        runners, self._runners = self._runners, {}
        # Every thread told first: the links end within one poll period together, not in turn.
        for runner in runners.values():
            runner.request_stop()
        for runner in runners.values():
            runner.stop()

    def __enter__(self) -> DeviceBay:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----- what tests and operators use --------------------------------------------------------

    @property
    def names(self) -> builtins.list[str]:
        return list(self._emulators)

    @property
    def terminal_id(self) -> str | None:
        return self.profile.terminal_id if self.profile else None

    def emulator(self, name: str) -> Any:
        """The emulator of a device (typed Any: each device class has its own operator methods)."""
        try:
            return self._emulators[name]
        except KeyError:
            raise BayError(
                f"no device {name!r} in this bay; devices: {', '.join(self._emulators)}"
            ) from None

    def runner(self, name: str) -> LinkRunner:
        self.emulator(name)
        try:
            return self._runners[name]
        except KeyError:
            raise BayError(f"{name}: the bay is not running; start() it first") from None

    def url(self, name: str) -> str:
        """The pyserial URL (or pty path) a driver opens to reach device `name`."""
        return self.runner(name).url

    def urls(self) -> dict[str, str]:
        return {name: self.url(name) for name in self._emulators}

    def link(self, name: str) -> LinkSettings:
        self.emulator(name)
        return self._links[name]

    @property
    def card_reader(self) -> Any:
        return self.emulator("card_reader")

    @property
    def pin_pad(self) -> Any:
        return self.emulator("pin_pad")

    @property
    def cash_dispenser(self) -> Any:
        return self.emulator("cash_dispenser")

    @property
    def receipt_printer(self) -> Any:
        return self.emulator("receipt_printer")

    def inject(self, target: str, fault: str, **params: Any) -> str:
        """Arm a fault on a device ("pin_pad") or link ("pin_pad.link"); see FaultBoard.inject."""
        return self.faults.inject(target, fault, **params)

    def clear(self, target: str | None = None, fault: str | None = None) -> None:
        self.faults.clear(target, fault)

    def armed(self) -> builtins.list[ArmedFault]:
        """Every fault armed on a device or link of this bay (see FaultBoard.armed)."""
        return self.faults.armed()
