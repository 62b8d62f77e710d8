"""What the controller needs of each device driver and of the host link, as typed protocols.

The real drivers (device/drivers) and the ISO 8583 host link satisfy these; unit tests use mocks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from config.card_numbers import mask_pan
from device.controller.device_status import (
    CardReaderStatus,
    CardTracks,
    DispenseResult,
    DispenserStatus,
    EncryptedPinBlock,
    PinPadStatus,
    PresentResult,
    PrinterStatus,
    RetractResult,
)
from peripherals.wire.pin_pad import KeyEvent

# ----- what goes wrong at a device: raised by every driver, handled by the controller -----


class DriverError(Exception):
    """A device driver could not do what was asked."""


class DeviceTimeout(DriverError, TimeoutError):
    """The device did not answer in time."""


class DeviceFault(DriverError):
    """The device answered with an error; `code` is the device's own error code."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class LinkError(DriverError, ConnectionError):
    """The serial link failed (port closed, peer gone)."""


# ----- the devices ------------------------------------------------------------------------


class CardReaderPort(Protocol):
    def initialise(self) -> None: ...
    def status(self) -> CardReaderStatus: ...
    def enable_entry(self) -> None: ...
    def disable_entry(self) -> None: ...
    def read_tracks(self) -> CardTracks: ...
    def eject(self) -> None: ...
    def capture(self) -> None: ...
    def close(self) -> None: ...


class PinPadPort(Protocol):
    def status(self) -> PinPadStatus: ...
    def start_plain_entry(self) -> None: ...
    def stop_entry(self) -> None: ...
    def start_pin_entry(
        self,
        pan: str,
        *,
        pin_block_format: int = 0,
        min_length: int = 4,
        max_length: int = 12,
        timeout_seconds: int = 30,
    ) -> None: ...
    def poll_events(self, timeout: float = 0.0) -> list[KeyEvent]: ...
    def get_pin_block(self) -> EncryptedPinBlock: ...
    def cancel(self) -> None: ...
    def close(self) -> None: ...


class CashDispenserPort(Protocol):
    def status(self) -> DispenserStatus: ...
    def dispense(self, notes: dict[int, int], *, transaction: int) -> DispenseResult: ...
    def present(self) -> PresentResult: ...
    def taken(self) -> bool: ...
    def retract(self) -> RetractResult: ...
    def purge(self) -> int: ...
    def replenish(self, counts: dict[int, int]) -> None: ...
    def close(self) -> None: ...


class ReceiptPrinterPort(Protocol):
    def status(self) -> PrinterStatus: ...
    def print_receipt(
        self, lines: list[str], *, title: str | None = None, qr: str | None = None
    ) -> None: ...
    def close(self) -> None: ...


class HostUnavailable(ConnectionError):
    """The host could not be reached, or did not answer in time.

    `stan` and `transmitted_at` name the request that failed once one was numbered: it may have
    reached the host, so a failed withdrawal must be reversed under that STAN.
    """

    stan: str | None = None
    transmitted_at: dt.datetime | None = None


@dataclass(frozen=True)
class CardData:
    pan: str
    expiry: str
    service_code: str = ""

    def __repr__(self) -> str:  # a session reaches logs and test reports masked
        return f"CardData({mask_pan(self.pan)}, expiry={self.expiry})"


@dataclass(frozen=True)
class PinBlock:
    block: bytes = field(repr=False)
    format: int
    ksn: str | None = None


@dataclass(frozen=True)
class MiniStatementLine:
    """One line of a mini statement as the host sent it."""

    posted_at: dt.datetime
    description: str
    amount: int  # cents, negative for a debit
    balance_after: int  # cents


@dataclass(frozen=True)
class HostReply:
    response_code: str
    stan: str
    transmitted_at: dt.datetime
    ledger_balance: int | None = None
    available_balance: int | None = None
    statement: tuple[MiniStatementLine, ...] = ()

    @property
    def approved(self) -> bool:
        return self.response_code == "00"


class HostPort(Protocol):
    """The bank as the ATM sees it; each call is one ISO 8583 exchange."""

    def sign_on(self) -> None: ...
    def echo(self) -> None: ...
    def verify_pin(self, card: CardData, pin: PinBlock) -> HostReply: ...
    def balance(self, card: CardData, pin: PinBlock, account: str) -> HostReply: ...
    def withdraw(
        self,
        card: CardData,
        pin: PinBlock,
        account: str,
        amount: int,
        *,
        before_send: Callable[[str, dt.datetime], None] | None = None,
    ) -> HostReply:
        """`before_send(stan, transmitted_at)` runs before the request leaves: the ATM journals
        its intent there, so a crash during the round trip leaves a STAN to reverse."""
        ...

    def transfer(
        self, card: CardData, pin: PinBlock, from_account: str, to_account: str, amount: int
    ) -> HostReply: ...
    def mini_statement(self, card: CardData, pin: PinBlock, account: str) -> HostReply: ...
    def change_pin(self, card: CardData, pin: PinBlock, new_pin: PinBlock) -> HostReply: ...
    # Advices answer the host's response code ("91"/"96": not handled, send it again later).
    def complete(self, original_stan: str, transmitted_at: str, amount: int) -> str: ...
    def reverse(
        self, original_stan: str, transmitted_at: str, amount: int, dispensed_amount: int
    ) -> str: ...
