"""Driver of the motorised card reader: framed commands, ACK/NAK, retransmission and deadlines.

Card number, expiry and service code come from track 2; a full card number is never logged.
"""

from __future__ import annotations

import logging
import re
from types import TracebackType
from typing import Literal, cast

from config.card_numbers import luhn_valid, mask_pan
from device.controller.device_status import CardMedia, CardReaderStatus, CardTracks
from device.controller.ports import DeviceFault, DeviceTimeout
from device.drivers.base import ExchangeRules, Refused, SerialDriver
from peripherals.wire import card_reader as wire
from peripherals.wire.card_reader import (
    CardCommand,
    CardPosition,
    EntryMode,
    ErrorCode,
    InitialiseMode,
    MoveTo,
    NegativeReply,
    PositiveReply,
    Reply,
)

log = logging.getLogger(__name__)


class CardReaderError(DeviceFault):
    """The reader refused a command: `code` is its error code ("10", "E1"...), `reason` says it."""

    def __init__(self, message: str, code: str = "", reason: str = "") -> None:
        super().__init__(message, code)
        self.reason = reason or message


class CardReadError(CardReaderError, ValueError):
    """The card's tracks could not be read, or hold no usable card number."""


MEDIA: dict[CardPosition, CardMedia] = {
    CardPosition.NONE: CardMedia.NONE,
    CardPosition.GATE: CardMedia.GATE,
    CardPosition.INSIDE: CardMedia.INSIDE,
    CardPosition.JAMMED: CardMedia.JAMMED,
}

READ_ERRORS = frozenset(
    {
        ErrorCode.READ_ERROR,
        ErrorCode.NO_START_SENTINEL,
        ErrorCode.NO_END_SENTINEL,
        ErrorCode.PARITY,
        ErrorCode.LRC,
        ErrorCode.NO_DATA,
    }
)

TRACK2 = re.compile(r"(?P<pan>\d{12,19})=(?P<expiry>\d{4})(?P<service>\d{3})\d*")

InitialiseAction = Literal["capture", "eject", "keep"]
INITIALISE_MODES: dict[str, InitialiseMode] = {
    "capture": InitialiseMode.CAPTURE,
    "eject": InitialiseMode.EJECT,
    "keep": InitialiseMode.KEEP,
}


class CardReaderDriver(SerialDriver):
    """A Sankyo-style motorised card reader on a serial link (pty path, /dev/tty*, socket://...).

    Every command is sent up to 3 times (on NAK or on no ACK within 300 ms); once it is
    acknowledged, the reply must come within `timeout` seconds, and the command is never sent
    again (an eject or a capture must not run twice). Replies are acknowledged, and a damaged
    reply is refused (NAK) so the reader sends it again.
    """

    RULES = ExchangeRules(
        sends=wire.COMMAND_SENDS,
        ack_timeout=wire.ACK_TIMEOUT,
        damaged_frame_acks=True,  # the reader sends nothing unasked: a damaged frame is its reply
    )

    def __init__(self, url: str, *, timeout: float = wire.REPLY_TIMEOUT) -> None:
        super().__init__(url, timeout=timeout)
        # The line's 250 ms inter-byte rule holds both ways: a reply that stalls mid-frame is
        # dropped and refused with NAK when its late bytes come, and the reader sends it again.
        self._framer = wire.FrameReader()

    def __enter__(self) -> CardReaderDriver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ----- the commands ----------------------------------------------------------------------

    def initialise(self, *, card: InitialiseAction = "capture") -> None:
        """Reset the reader; a card left inside is captured (default), ejected or kept."""
        try:
            mode = INITIALISE_MODES[card]
        except KeyError:
            raise ValueError(f"card action {card!r}: expected capture, eject or keep") from None
        self.write(wire.CANCEL)  # drop whatever half frame the reader may hold
        self._positive(wire.initialise(mode))

    def status(self) -> CardReaderStatus:
        reply = self._positive(wire.status_request())
        try:
            data = wire.StatusData.decode(reply.data)
        except wire.CardReaderCodecError as err:
            raise CardReaderError(f"card reader: bad status reply: {err}", "", str(err)) from err
        condition = data.condition
        return CardReaderStatus(
            media=MEDIA[reply.position],
            retain_bin_full=data.retain_bin_full,
            initialised=condition != ErrorCode.NOT_INITIALISED,
            last_error=""
            if condition in (wire.NO_CONDITION, ErrorCode.NOT_INITIALISED)
            else condition,
        )

    def enable_entry(self) -> None:
        self._positive(wire.entry_gate(EntryMode.ENABLE))

    def disable_entry(self) -> None:
        self._positive(wire.entry_gate(EntryMode.DISABLE))

    def accept_entry(self) -> None:
        """Draw in a card waiting at the gate (or accept the next card if there is none)."""
        self._positive(wire.accept_entry())

    def read_tracks(self) -> CardTracks:
        """Read tracks 2 and 1. Track 2 must read and hold PAN=YYMM+service code, or
        CardReadError; an unreadable track 1 is None."""
        track2 = self._read_track(2)
        match = TRACK2.fullmatch(track2)
        if match is None:
            raise CardReadError(
                "card reader: track 2 does not hold PAN=YYMM and a service code",
                reason="bad track 2 data",
            )
        pan = match["pan"]
        if not luhn_valid(pan):
            raise CardReadError(
                f"card reader: card number {mask_pan(pan)} fails the Luhn check",
                reason="card number fails the Luhn check",
            )
        try:
            track1: str | None = self._read_track(1)
        except CardReadError as err:
            log.info("card %s: track 1 unreadable (%s)", mask_pan(pan), err.reason)
            track1 = None
        tracks = CardTracks(track1, track2, pan, match["expiry"], match["service"])
        log.info("card %s read", tracks.masked_pan)
        return tracks

    def eject(self) -> None:
        """Move the card to the gate for the customer to take."""
        self._positive(wire.move_card(MoveTo.GATE))

    def capture(self) -> None:
        """Move the card (inside or at the gate) into the retain bin."""
        self._positive(wire.move_card(MoveTo.RETAIN_BIN))

    def cancel(self) -> None:
        """Send DLE EOT: the reader stops resending its last reply and drops any half frame."""
        self.write(wire.CANCEL)

    # ----- commands and their replies -------------------------------------------------------

    def _read_track(self, track: int) -> str:
        command = wire.read_track(track)
        reply = self._transact(command)
        if isinstance(reply, NegativeReply):
            cls = CardReadError if reply.error in READ_ERRORS else CardReaderError
            raise cls(
                f"card reader: track {track}: {reply.reason} ({reply.error})",
                reply.error,
                reply.reason,
            )
        try:
            return reply.data.decode("ascii")
        except UnicodeDecodeError as err:
            raise CardReadError(
                f"card reader: track {track} data is not ASCII", reason="bad track data"
            ) from err

    def _positive(self, command: CardCommand) -> PositiveReply:
        reply = self._transact(command)
        if isinstance(reply, NegativeReply):
            raise CardReaderError(
                f"card reader: {command.label()} refused: {reply.reason} ({reply.error})",
                reply.error,
                reply.reason,
            )
        return reply

    def _transact(self, command: CardCommand) -> Reply:
        frame = command.frame()
        self.discard_input(self._framer)
        try:
            # mypy infers the union of the two replies as object, hence the cast
            return cast(
                Reply,
                self.exchange(
                    self._framer,
                    frame,
                    lambda text: self._accept(text, command),
                    self.RULES,
                    label=command.label(),
                ),
            )
        except Refused as err:
            self.cancel()
            raise CardReaderError(
                f"card reader: {command.label()} refused {self.RULES.sends} times "
                "(NAK: damaged on the link)",
                "NAK",
                "frame damaged on the link",
            ) from err
        except DeviceTimeout:
            self.cancel()
            raise

    def _accept(self, text: bytes, command: CardCommand) -> Reply | None:
        """The reply if the frame's `text` answers `command`, None if it is stale."""
        try:
            reply = wire.decode_reply(text)
        except wire.CardReaderCodecError as err:
            raise CardReaderError(
                f"card reader: reply to {command.label()} does not decode: {err}", "", str(err)
            ) from err
        if reply.command != command.command or reply.parameter != command.parameter:
            log.debug("card reader: ignored a stale reply while waiting for %s", command.label())
            return None
        if isinstance(reply, NegativeReply):
            log.debug("card reader: %s -> N %s", command.label(), reply.error)
        else:
            log.debug(
                "card reader: %s -> P %s (%d data bytes)",
                command.label(),
                reply.position.value,
                len(reply.data),
            )
        return reply
