"""The emulated motorised card reader: a card slot with a gate, a read head, and a retain bin.

Speaks the framed protocol of peripherals/wire/card_reader.py; customers insert and take cards here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from config.disk_calls import DiskCalls
from peripherals.cards import TrackDamage, TrackReadError, WalletCard, damage_stripe, load_wallet
from peripherals.cards import read_stripe as decode_stripe
from peripherals.emulator import Clock, Emulator
from peripherals.fault_catalogue import fault_names
from peripherals.faults import Fault, FaultMode
from peripherals.state_file import StateFileError, read_state, write_state
from peripherals.wire import card_reader as wire
from peripherals.wire.card_reader import (
    CardCommand,
    CardPosition,
    Command,
    Control,
    ErrorCode,
    InitialiseMode,
    NegativeReply,
    PositiveReply,
)
from peripherals.wire.framing import FrameEvent

log = logging.getLogger(__name__)


class CardReaderConfigError(ValueError):
    """A card reader config section that cannot be used."""


class CardHandlingError(RuntimeError):
    """A customer action the reader cannot take now (a second card, nothing at the gate)."""


class MediaState(StrEnum):
    """Where the card is (the XFS media states not present / entering / present / jammed)."""

    NONE = "none"
    GATE = "gate"
    INSIDE = "inside"
    JAMMED = "jammed"


POSITIONS: Mapping[MediaState, CardPosition] = {
    MediaState.NONE: CardPosition.NONE,
    MediaState.GATE: CardPosition.GATE,
    MediaState.INSIDE: CardPosition.INSIDE,
    MediaState.JAMMED: CardPosition.JAMMED,
}

FAULTS = fault_names("card_reader")  # and their parameters: peripherals/fault_catalogue.py


@dataclass
class _Unacknowledged:
    """A reply sent and not yet acknowledged: resent on NAK or silence."""

    frame: bytes
    sent_at: float
    sends: int = 1


class CardReaderEmulator(Emulator):
    """A Sankyo-style motorised reader holding at most one card, with a retain bin."""

    NAME = "card_reader"
    FAULTS = FAULTS

    state_disk: DiskCalls | None = None  # the os calls of the retain bin's saves; tests fail them

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        wallet: Mapping[str, WalletCard] | None = None,
        retain_capacity: int = 20,
        state_dir: Path | None = None,
        link_clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock)
        if isinstance(retain_capacity, bool) or not isinstance(retain_capacity, int):
            raise CardReaderConfigError(
                f"card reader: retain_capacity must be an integer, got {retain_capacity!r}"
            )
        if retain_capacity < 1:
            raise CardReaderConfigError(
                f"card reader: retain_capacity {retain_capacity} must be at least 1"
            )
        self.wallet: dict[str, WalletCard] = dict(wallet or {})
        self._retain_capacity = retain_capacity
        self.state_dir = state_dir
        # Bytes cross the link in real time, so link timers read a real clock even when the
        # device's own clock is a scenario's virtual one.
        self._link_clock = link_clock
        self._framer = wire.FrameReader()
        self._unacked: _Unacknowledged | None = None
        self._state = MediaState.NONE
        self._card: WalletCard | None = None
        self._entry_enabled = False
        self._initialised = False
        self._last_entry_error: str = wire.NO_CONDITION
        self._retained: list[str] = []  # masked card numbers of the retain bin
        self.commands = 0
        self.refused_frames = 0
        self.resent_replies = 0
        self.unacknowledged_replies = 0
        self._load_state()

    @classmethod
    def from_config(
        cls,
        section: Mapping[str, Any],
        *,
        clock: Clock = time.monotonic,
        state_dir: Path | None = None,
    ) -> CardReaderEmulator:
        """Build from a section like {"wallet": "config/wallet.yaml", "retain_capacity": 20}."""
        known = {"wallet", "retain_capacity"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise CardReaderConfigError(
                f"card reader: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        wallet: dict[str, WalletCard] = {}
        if "wallet" in section:
            path = section["wallet"]
            if not isinstance(path, str | Path):
                raise CardReaderConfigError(f"card reader: wallet must be a path, got {path!r}")
            wallet = load_wallet(Path(path))
        return cls(
            clock,
            wallet=wallet,
            retain_capacity=section.get("retain_capacity", 20),
            state_dir=state_dir,
        )

    # ----- what customers, operators and tests see -------------------------------------------

    @property
    def state(self) -> MediaState:
        with self.lock:
            return self._state

    @property
    def card(self) -> WalletCard | None:
        """The card in the reader (at the gate, inside or jammed), if any."""
        with self.lock:
            return self._card

    @property
    def entry_enabled(self) -> bool:
        with self.lock:
            return self._entry_enabled

    @property
    def initialised(self) -> bool:
        with self.lock:
            return self._initialised

    @property
    def retained_count(self) -> int:
        with self.lock:
            return len(self._retained)

    @property
    def retain_capacity(self) -> int:
        return self._retain_capacity

    @property
    def retained_cards(self) -> list[str]:
        """The masked card numbers in the retain bin, oldest first."""
        with self.lock:
            return list(self._retained)

    @property
    def awaiting_ack(self) -> bool:
        """Whether the last reply is still waiting for the host's ACK."""
        with self.lock:
            return self._unacked is not None

    def waiting_on_link(self) -> bool:
        return self.awaiting_ack

    def holds_partial_frame(self) -> bool:
        return self._framer.buffered > 0

    def insert_card(self, card: WalletCard | str) -> MediaState:
        """A customer pushes a card (or a wallet card id) into the slot; returns where it ends.

        With entry enabled the reader draws it inside; otherwise (or when it refuses the card)
        the card stays at the gate for the customer to take back.
        """
        with self.lock:
            if isinstance(card, str):
                found = self.wallet.get(card)
                if found is None:
                    known = ", ".join(sorted(self.wallet)) or "none"
                    raise CardHandlingError(f"no card {card!r} in the wallet; cards: {known}")
                card = found
            if self._state is not MediaState.NONE:
                raise CardHandlingError(f"a card is already in the reader ({self._state.value})")
            self._card = card
            self._state = MediaState.GATE
            if self._entry_enabled and self._initialised and not self._powered_off():
                self._draw_in()
            log.info("card %s inserted: %s", card.masked_pan, self._state.value)
            return self._state

    def take_card(self) -> WalletCard:
        """The customer takes the card waiting at the gate."""
        with self.lock:
            if self._state is not MediaState.GATE or self._card is None:
                raise CardHandlingError(f"no card at the gate (card: {self._state.value})")
            card, self._card = self._card, None
            self._state = MediaState.NONE
            log.info("card %s taken at the gate", card.masked_pan)
            return card

    def remove_card(self) -> str | None:
        """The operator opens the reader and takes out whatever card is in it (at the gate,
        inside or jammed); returns its masked number, or None if it was empty."""
        with self.lock:
            card, self._card = self._card, None
            self._state = MediaState.NONE
            return card.masked_pan if card is not None else None

    def empty_retain_bin(self) -> int:
        """The operator empties the retain bin; returns how many cards were in it."""
        with self.lock:
            count = len(self._retained)
            self._retained.clear()
            self._save_state()
            return count

    def clear_fault(self, name: str | None = None) -> None:
        """Clear armed faults; clearing a jam also removes the jammed card (the operator did)."""
        with self.lock:
            self.faults.clear(name)
            if name in (None, "jam") and self._state is MediaState.JAMMED:
                self._state, self._card = MediaState.NONE, None

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                **super().status(),
                "media": self._state.value,
                "card": self._card.masked_pan if self._card else None,
                "entry_enabled": self._entry_enabled,
                "initialised": self._initialised,
                "powered": not self._powered_off(),
                "retained": len(self._retained),
                "retain_capacity": self._retain_capacity,
                "retain_bin_full": self._retain_bin_full(),
                "commands": self.commands,
                "refused_frames": self.refused_frames,
                "resent_replies": self.resent_replies,
            }

    # ----- the link --------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        now = self._link_clock()
        for event in self._framer.feed(data, now):
            self._on_event(event, now)

    def tick(self, now: float) -> None:
        if self._powered_off():
            self._lose_power()
            return
        link_now = self._link_clock()
        for event in self._framer.expire(link_now):
            self._on_event(event, link_now)
        pending = self._unacked
        if pending is not None and link_now - pending.sent_at > wire.ACK_TIMEOUT:
            self._resend(link_now)

    def _on_event(self, event: FrameEvent[bytes], now: float) -> None:
        if self._powered_off():
            self._lose_power()
            return  # no power, no answer
        if event.frame is not None:
            self._unacked = None  # a new command acknowledges the last reply
            self.send(bytes((wire.ACK,)))
            reply = self._execute(event.frame)
            if reply is not None:
                self._unacked = _Unacknowledged(reply, now)
                self.send(reply)
        elif event.nak:
            self.refused_frames += 1
            log.debug("card reader: refused a frame: %s", event.error)
            self.send(bytes((wire.NAK,)))
        elif event.control == Control.ACK:
            self._unacked = None
        elif event.control == Control.NAK:
            if self._unacked is not None:
                self._resend(now)
        elif event.control == Control.CANCEL:
            self._unacked = None  # between frames only, so no half frame to drop

    def _lose_power(self) -> None:
        """Without power the reader forgets its initialisation, its entry gate and its reply."""
        self._initialised = False
        self._entry_enabled = False
        self._unacked = None
        self._framer.reset()

    def _resend(self, now: float) -> None:
        pending = self._unacked
        assert pending is not None
        if pending.sends >= wire.REPLY_SENDS:
            self._unacked = None
            self.unacknowledged_replies += 1
            log.warning("card reader: reply not acknowledged after %d sends", pending.sends)
            return
        pending.sends += 1
        pending.sent_at = now
        self.resent_replies += 1
        self.send(pending.frame)

    # ----- commands --------------------------------------------------------------------------

    def _execute(self, text: bytes) -> bytes | None:
        self.commands += 1
        self.faults.command_seen()
        try:
            command = wire.decode_command(text)
        except wire.CardReaderCodecError:
            return wire.refusal(text)
        if self.faults.take("power_down") is not None:
            self._initialised = False
            self._entry_enabled = False
            return self._refuse(command, ErrorCode.POWER_DOWN)
        match command.command:
            case Command.INITIALISE:
                return self._initialise(command)
            case Command.STATUS:
                return self._positive(command, self._status_data().encode())
        if not self._initialised:
            return self._refuse(command, ErrorCode.NOT_INITIALISED)
        if self._state is MediaState.JAMMED:
            return self._refuse(command, ErrorCode.JAM)
        match command.command:
            case Command.ACCEPT_ENTRY:
                return self._accept_entry(command)
            case Command.ENTRY_GATE:
                self._entry_enabled = command.parameter == wire.EntryMode.ENABLE
                return self._positive(command)
            case Command.MOVE_CARD:
                if command.parameter == wire.MoveTo.GATE:
                    return self._eject(command)
                return self._capture(command)
            case _:
                return self._read(command, int(command.parameter))

    def _positive(self, command: CardCommand, data: bytes = b"") -> bytes:
        return PositiveReply(
            command.command, command.parameter, POSITIONS[self._state], data
        ).frame()

    def _refuse(self, command: CardCommand, code: ErrorCode) -> bytes:
        return NegativeReply(command.command, command.parameter, code.value).frame()

    def _status_data(self) -> wire.StatusData:
        condition = wire.NO_CONDITION
        if not self._initialised:
            condition = ErrorCode.NOT_INITIALISED.value
        elif self._last_entry_error != wire.NO_CONDITION:
            condition, self._last_entry_error = self._last_entry_error, wire.NO_CONDITION
        return wire.StatusData(self._retain_bin_full(), condition)

    def _initialise(self, command: CardCommand) -> bytes:
        self._initialised = True
        self._entry_enabled = False
        self._last_entry_error = wire.NO_CONDITION
        if self._state is MediaState.INSIDE:
            mode = InitialiseMode(command.parameter)
            if mode is InitialiseMode.EJECT and not self._jams():
                self._state = MediaState.GATE
            elif (
                mode is InitialiseMode.CAPTURE and not self._retain_bin_full() and not self._jams()
            ):
                self._retain()
        return self._positive(command, wire.FIRMWARE_ID)

    def _accept_entry(self, command: CardCommand) -> bytes:
        if self._state is MediaState.GATE:
            error = self._draw_in()
            if error is not None:
                return self._refuse(command, error)
        elif self._state is MediaState.NONE:
            self._entry_enabled = True
        return self._positive(command)

    def _eject(self, command: CardCommand) -> bytes:
        if self._state is MediaState.GATE:
            return self._positive(command)
        if self._state is not MediaState.INSIDE:
            return self._refuse(command, ErrorCode.NOT_NOW)
        if self._jams():
            return self._refuse(command, ErrorCode.JAM)
        if self.faults.take("card_pulled_out") is not None:
            card, self._card = self._card, None
            self._state = MediaState.NONE
            log.info("card %s pulled out during eject", card.masked_pan if card else "?")
            return self._refuse(command, ErrorCode.CARD_PULLED_OUT)
        self._state = MediaState.GATE
        return self._positive(command)

    def _capture(self, command: CardCommand) -> bytes:
        if self._state not in (MediaState.GATE, MediaState.INSIDE):
            return self._refuse(command, ErrorCode.NOT_NOW)
        full = self.faults.take("retain_bin_full") is not None
        if full or len(self._retained) >= self._retain_capacity:
            return self._refuse(command, ErrorCode.RETAIN_BIN_FULL)
        if self._jams():
            return self._refuse(command, ErrorCode.JAM)
        self._retain()
        return self._positive(command)

    def _read(self, command: CardCommand, track: int) -> bytes:
        if self._state is not MediaState.INSIDE or self._card is None:
            return self._refuse(command, ErrorCode.NOT_NOW)
        stripe = self._card.stripe(track)
        damage = self._track_fault(track)
        if damage is not None and stripe:
            stripe = damage_stripe(stripe, damage, track)
        try:
            text = decode_stripe(stripe, track) if track in (1, 2) else ""
        except TrackReadError as err:
            return self._refuse(command, err.code)
        if not text:
            return self._refuse(command, ErrorCode.NO_DATA)
        return self._positive(command, text.encode("ascii"))

    # ----- mechanics and faults --------------------------------------------------------------

    def _draw_in(self) -> ErrorCode | None:
        """Take the card at the gate inside; the error if the reader refused or jammed it."""
        error: ErrorCode | None = None
        if self.faults.take("card_too_short") is not None:
            error = ErrorCode.CARD_TOO_SHORT
        elif self.faults.take("card_too_long") is not None:
            error = ErrorCode.CARD_TOO_LONG
        elif self._jams():
            return ErrorCode.JAM
        if error is not None:
            self._last_entry_error = error.value
            return error  # pushed back to the gate
        self._state = MediaState.INSIDE
        self._entry_enabled = False  # the shutter closes behind the card
        return None

    def _jams(self) -> bool:
        if self.faults.take("jam") is None:
            return False
        self._state = MediaState.JAMMED
        self._entry_enabled = False
        log.warning("card reader: card jammed")
        return True

    def _retain(self) -> None:
        card, self._card = self._card, None
        self._state = MediaState.NONE
        self._retained.append(card.masked_pan if card else "")
        self._save_state()
        log.info("card %s captured to the retain bin", card.masked_pan if card else "?")

    def _retain_bin_full(self) -> bool:
        return (
            self.faults.is_armed("retain_bin_full") or len(self._retained) >= self._retain_capacity
        )

    def _powered_off(self) -> bool:
        if not self.faults.is_armed("power_down"):  # checked at every tick and frame
            return False
        return any(
            f.name == "power_down" and f.mode is FaultMode.PERSISTENT for f in self.faults.active()
        )

    def _track_fault(self, track: int) -> TrackDamage | None:
        fault: Fault | None = next(
            (f for f in self.faults.active() if f.name == "unreadable_track"), None
        )
        if fault is None:
            return None
        try:
            fault_track = int(fault.params.get("track", 2))
            damage = TrackDamage(str(fault.params.get("damage", TrackDamage.PARITY.value)))
        except ValueError:
            fault_track, damage = 2, TrackDamage.PARITY
        if fault_track != track or self.faults.take("unreadable_track") is None:
            return None
        return damage

    # ----- the retain bin survives a restart -------------------------------------------------

    def _state_file(self) -> Path | None:
        return self.state_dir / "retain_bin.json" if self.state_dir is not None else None

    def _load_state(self) -> None:
        path = self._state_file()
        if path is None or not path.exists():
            return
        try:
            retained = read_state(path, "retain bin state").get("retained")
        except StateFileError as err:
            raise CardReaderConfigError(str(err)) from err
        if not isinstance(retained, list) or not all(isinstance(x, str) for x in retained):
            raise CardReaderConfigError(
                f"{path}: unreadable retain bin state: retained: expected a list of masked "
                "card numbers"
            )
        self._retained = retained

    def _save_state(self) -> None:
        path = self._state_file()
        if path is None:
            return
        # StateWriteError leaves the previous file; the reader stops rather than forget a card
        write_state(path, {"retained": self._retained}, self.state_disk)
