"""What the devices report to the controller: the typed records the drivers fill and the ports
return, so the controller never reads a field by an untyped name."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from config.card_numbers import mask_pan


class CardMedia(StrEnum):
    """Where the card is, as the reader sees it."""

    NONE = "none"
    GATE = "gate"
    INSIDE = "inside"
    JAMMED = "jammed"


class PaperLevel(StrEnum):
    """The receipt paper; UNKNOWN when the printer did not answer."""

    ADEQUATE = "adequate"
    NEAR_END = "near_end"
    OUT = "out"
    UNKNOWN = "unknown"


# ----- card reader ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardReaderStatus:
    media: CardMedia
    retain_bin_full: bool
    initialised: bool = True
    last_error: str = ""  # a refused card entry ("13" too long, "14" too short), reported once


@dataclass(frozen=True)
class CardTracks:
    """What the card's stripe holds; the PAN and raw tracks stay out of repr."""

    track1: str | None = field(repr=False)
    track2: str | None = field(repr=False)
    pan: str = field(repr=False)
    expiry: str  # YYMM
    service_code: str

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)


# ----- PIN pad ----------------------------------------------------------------------------------


class PinPadMode(StrEnum):
    """What the keys do now: nothing, show digits in clear, or build a PIN block."""

    IDLE = "idle"
    PLAIN = "plain"
    PIN_ENTRY = "pin_entry"


class PinKeySource(StrEnum):
    """The key the next PIN block is enciphered under."""

    FIXED = "fixed"
    DUKPT_TDES = "dukpt_tdes"
    DUKPT_AES = "dukpt_aes"


@dataclass(frozen=True)
class PinPadStatus:
    mode: PinPadMode
    keys_loaded: bool
    tampered: bool
    pin_ready: bool = False
    pin_block_format: int = 0
    key_source: PinKeySource = PinKeySource.FIXED


@dataclass(frozen=True)
class EncryptedPinBlock:
    """An enciphered ISO 9564 PIN block, with the DUKPT KSN if any. Never log `block`."""

    block: bytes = field(repr=False)
    format: int
    ksn: str | None


# ----- cash dispenser ---------------------------------------------------------------------------


class Shutter(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    JAMMED = "jammed"


class PresentOutcome(StrEnum):
    """What became of the last notes presented: recovery settles a withdrawal by it."""

    NONE = "none"
    PRESENTED = "presented"
    TAKEN = "taken"
    RETRACTED = "retracted"


class CassetteState(StrEnum):
    OK = "ok"
    LOW = "low"
    EMPTY = "empty"
    MISSING = "missing"


@dataclass(frozen=True)
class CassetteStatus:
    number: int
    denomination: int  # cents
    currency: str  # ISO 4217 numeric, e.g. "978"
    count: int
    capacity: int
    low_threshold: int
    state: CassetteState


@dataclass(frozen=True)
class DispenserStatus:
    cassettes: list[CassetteStatus]
    stacker_notes: int
    presented_notes: int
    shutter: Shutter
    reject_notes: int
    retract_notes: int
    device_ok: bool
    stacker_amount: int = 0
    presented_amount: int = 0
    transport_notes: int = 0
    reject_amount: int = 0
    retract_amount: int = 0
    last_outcome: PresentOutcome = PresentOutcome.NONE


@dataclass(frozen=True)
class DispenseResult:
    dispensed: dict[int, int]  # notes that reached the stacker, per cassette
    rejected: dict[int, int]  # notes diverted to the reject bin, per cassette
    error: str | None  # the device's error name, None if good
    ok: bool  # no error and every note asked for is in the stacker
    amount: int  # cents in the stacker
    in_transport: dict[int, int] = field(default_factory=dict)  # stuck notes after a jam
    picked: dict[int, int] = field(default_factory=dict)  # notes out of each cassette
    repeated: bool = False  # the device answered a re-sent command from memory


@dataclass(frozen=True)
class PresentResult:
    presented_amount: int  # cents
    ok: bool
    error: str | None
    notes: int = 0


@dataclass(frozen=True)
class RetractResult:
    notes: int
    amount: int  # cents


# ----- receipt printer --------------------------------------------------------------------------


@dataclass(frozen=True)
class PrinterStatus:
    """None / "unknown" where the printer did not answer."""

    online: bool | None
    cover_open: bool | None
    paper: PaperLevel
    jammed: bool | None

    @property
    def answered(self) -> bool:
        return self.online is not None
