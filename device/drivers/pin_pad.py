"""Driver of the encrypted PIN pad: framed commands with ACK/NAK and retries, key events queued.

The ATM sees key events and enciphered PIN blocks only; a clear PIN never reaches this side.
"""

from __future__ import annotations

import logging
from collections import deque

from device.controller.device_status import (
    EncryptedPinBlock,
    PinKeySource,
    PinPadMode,
    PinPadStatus,
)
from device.controller.ports import DeviceFault
from device.drivers.base import ExchangeRules, SerialDriver
from peripherals.wire import pin_pad as wire
from peripherals.wire.pin_pad import ErrorCode, KeyEvent

__all__ = [
    "EncryptedPinBlock",
    "KeyEvent",
    "PinPadDriver",
    "PinPadError",
    "PinPadStatus",
    "TamperedError",
]

log = logging.getLogger(__name__)


class PinPadError(DeviceFault):
    """The PIN pad refused a command; `code` is its error code (E0..EF)."""


class TamperedError(PinPadError):
    """The PIN pad was tampered with: its keys are erased until it is re-installed."""


class PinPadDriver(SerialDriver):
    """An encrypted PIN pad on a serial link (any pyserial URL)."""

    MAX_EVENTS = 256  # events kept for poll_events; the oldest go first

    def __init__(self, url: str, *, timeout: float = wire.REPLY_TIMEOUT) -> None:
        super().__init__(url, timeout=timeout)
        # A driver told to give up sooner than the ACK timeout waits no longer for an ACK either.
        self._rules = ExchangeRules(
            sends=wire.COMMAND_SENDS, ack_timeout=min(wire.ACK_TIMEOUT, timeout)
        )
        self._framer = wire.FrameDecoder()
        self._events: deque[KeyEvent] = deque(maxlen=self.MAX_EVENTS)

    # ----- commands --------------------------------------------------------------------------

    def status(self) -> PinPadStatus:
        data = self._command(wire.Status(), check_tamper=False)
        try:
            status = wire.decode_status(data)
        except wire.PinPadCodecError as err:
            raise PinPadError(f"{self.url}: bad status reply: {err}") from err
        return PinPadStatus(
            mode=PinPadMode(status.mode.value),
            keys_loaded=status.keys_loaded,
            tampered=status.tampered,
            pin_ready=status.pin_ready,
            pin_block_format=status.pin_block_format,
            key_source=PinKeySource(status.key_source),
        )

    def load_key(self, slot: str, tr31_block: str) -> str:
        """Load a TR-31 key block (under the terminal master key) into `slot`: "PT" / "pin_tdes",
        "PA" / "pin_aes" or "MK" / "tmk". Returns the loaded key's check value (6 hex)."""
        data = self._command(wire.LoadKey(self._slot(slot), tr31_block.strip()))
        return self._kcv(data)

    def key_check_value(self, slot: str) -> str:
        return self._kcv(self._command(wire.ReadKeyCheckValue(self._slot(slot))))

    def select_pin_block(self, pin_block_format: int, *, dukpt: bool) -> None:
        """Choose the default format and whether the fixed PIN key or DUKPT enciphers."""
        source = wire.KeySource.DUKPT if dukpt else wire.KeySource.FIXED
        self._command(wire.SelectPinBlock(pin_block_format, source))

    def start_plain_entry(self) -> None:
        self._command(wire.StartPlainEntry())

    def stop_entry(self) -> None:
        self._command(wire.StopEntry())

    def start_pin_entry(
        self,
        pan: str,
        *,
        pin_block_format: int = 0,
        min_length: int = 4,
        max_length: int = 12,
        timeout_seconds: int = 30,
    ) -> None:
        try:
            command = wire.StartPinEntry(
                pan, pin_block_format, min_length, max_length, timeout_seconds
            )
            wire.encode_command(command)
        except wire.PinPadCodecError as err:
            raise PinPadError(f"{self.url}: {err}", ErrorCode.BAD_PARAMETER.value) from err
        self._command(command)

    def get_pin_block(self) -> EncryptedPinBlock:
        data = self._command(wire.GetPinBlock())
        try:
            block = wire.decode_pin_block(data)
        except wire.PinPadCodecError as err:
            raise PinPadError(f"{self.url}: bad PIN block reply: {err}") from err
        return EncryptedPinBlock(block.block, block.pin_block_format, block.ksn)

    def cancel(self) -> None:
        self._command(wire.Cancel())

    def poll_events(self, timeout: float = 0.0) -> list[KeyEvent]:
        """The key events received so far; waits up to `timeout` seconds for a first one."""
        deadline = self.deadlines.now() + timeout
        self.receive(self._framer, self._take, self.read_waiting())
        while not self._events and self.deadlines.now() < deadline:
            self.receive(self._framer, self._take, self.read_some(deadline))
        events = list(self._events)
        self._events.clear()
        return events

    # ----- frames ----------------------------------------------------------------------------

    @staticmethod
    def _slot(slot: str) -> wire.Slot:
        try:
            return wire.SLOT_NAMES[slot]
        except KeyError:
            known = ", ".join(wire.SLOT_NAMES)
            raise PinPadError(
                f"unknown key slot {slot!r}; known: {known}", ErrorCode.UNKNOWN_SLOT.value
            ) from None

    def _kcv(self, data: str) -> str:
        try:
            return wire.decode_key_check_value(data)
        except wire.PinPadCodecError as err:
            raise PinPadError(f"{self.url}: {err}") from err

    def _take(self, text: str, code: str | None = None) -> wire.Reply | None:
        """Queue a key event; return a reply that answers the command `code`, drop any other."""
        try:
            if wire.is_event(text):
                self._events.append(wire.decode_event(text))
                return None
            reply = wire.decode_reply(text)
        except wire.PinPadCodecError as err:
            log.warning("%s: PIN pad frame not understood: %s", self.url, err)
            return None
        if reply.command == code:
            return reply
        log.info("%s: stale %s reply dropped", self.url, reply.command)
        return None

    def _command(self, command: wire.Command, *, check_tamper: bool = True) -> str:
        """Send one command; the reply's data, or PinPadError / TamperedError / DeviceTimeout."""
        # Key events that came meanwhile are answered and kept; a reply there is stale.
        self.receive(self._framer, self._take, self.read_waiting())
        try:
            frame = wire.encode_frame(wire.encode_command(command))
        except ValueError as err:  # PinPadCodecError too: nothing that cannot be framed is sent
            raise PinPadError(f"{self.url}: {command.code}: {err}", "E1") from err
        reply = self.exchange(
            self._framer,
            frame,
            lambda text: self._take(text, command.code),
            self._rules,
            label=command.code,
        )
        self.receive(self._framer, self._take)  # frames read with the reply: events, at once
        if reply.ok:
            return reply.data
        code = reply.status
        text = f"{self.url}: PIN pad refused {command.code}: {code} {ErrorCode(code).description}"
        if code == ErrorCode.TAMPERED and check_tamper:
            raise TamperedError(text, code)
        raise PinPadError(text, code)
