"""The emulated encrypted PIN pad: keypad, key slots under a terminal master key, PIN blocks.

The clear PIN lives only in this object, only while it is being typed; the wire sees '*' and blocks.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peripherals.emulator import Clock, Emulator
from peripherals.fault_catalogue import PIN_PAD_KEYS, fault_names
from peripherals.pin_crypto import DukptError, dukpt_aes, dukpt_tdes, tr31
from peripherals.pin_crypto.key_check_value import Algorithm, key_check_value
from peripherals.pin_crypto.pin_block import AES_FORMATS, TDES_FORMATS, encrypt_pin_block
from peripherals.wire import pin_pad as wire
from peripherals.wire.framing import FrameEvent
from peripherals.wire.pin_pad import ErrorCode, KeySource, Mode, Slot

log = logging.getLogger(__name__)

KEYS = PIN_PAD_KEYS
STUCK_KEY_FAULT = "key_stuck"


class PinPadConfigError(ValueError):
    """A PIN pad config section that cannot be used."""


class DeviceError(Exception):
    """A command the device refuses; `code` goes back on the wire."""

    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.description)
        self.code = code


@dataclass(frozen=True)
class DukptConfig:
    scheme: str  # "tdes" | "aes"
    # Either the device's initial key as a key-injection facility loads it, or the BDK it is
    # derived from (a test convenience: a real PIN pad never sees the BDK).
    key: bytes = field(repr=False)
    ksn: bytes  # the initial KSN (TDES 10 bytes, AES 12 bytes)
    key_is_bdk: bool = True

    def initial_key(self) -> bytes:
        if not self.key_is_bdk:
            return self.key
        if self.scheme == "tdes":
            return dukpt_tdes.initial_key(self.key, self.ksn)
        return dukpt_aes.initial_key(self.key, self.ksn[:8])


@dataclass(frozen=True)
class PinPadConfig:
    tmk: bytes
    tmk_algorithm: str = "tdes"
    pin_key_tdes: bytes | None = None
    pin_key_aes: bytes | None = None
    pin_block_format: int = 0
    dukpt: DukptConfig | None = None

    def __repr__(self) -> str:  # keys never show up in a log line or a traceback
        return f"PinPadConfig(format={self.pin_block_format}, dukpt={self.dukpt is not None})"


def _hex_key(section: Mapping[str, Any], name: str, sizes: tuple[int, ...]) -> bytes:
    value = section[name]
    if not isinstance(value, str):
        raise PinPadConfigError(f"pin pad: {name} must be a quoted hex string")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise PinPadConfigError(f"pin pad: {name} is not hexadecimal") from None
    if len(key) not in sizes:
        raise PinPadConfigError(
            f"pin pad: {name} is {len(key)} bytes; expected {' or '.join(map(str, sizes))}"
        )
    return key


def parse_config(section: Mapping[str, Any]) -> PinPadConfig:
    known = {"tmk", "tmk_algorithm", "pin_key_tdes", "pin_key_aes", "pin_block_format", "dukpt"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise PinPadConfigError(
            f"pin pad: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if "tmk" not in section:
        raise PinPadConfigError("pin pad: tmk (the terminal master key, hex) is required")
    algorithm = section.get("tmk_algorithm", "tdes")
    if algorithm not in ("tdes", "aes"):
        raise PinPadConfigError(f"pin pad: tmk_algorithm {algorithm!r} is not tdes or aes")
    tmk = _hex_key(section, "tmk", (16, 24) if algorithm == "tdes" else (16, 24, 32))
    tdes = _hex_key(section, "pin_key_tdes", (16, 24)) if section.get("pin_key_tdes") else None
    aes = _hex_key(section, "pin_key_aes", (16, 24, 32)) if section.get("pin_key_aes") else None
    fmt = section.get("pin_block_format", 0)
    if isinstance(fmt, bool) or fmt not in wire.PIN_FORMATS:
        raise PinPadConfigError(f"pin pad: pin_block_format {fmt!r} is not one of 0, 1, 3, 4")
    dukpt = None
    raw = section.get("dukpt")
    if raw is not None:
        if not isinstance(raw, Mapping) or set(raw) not in (
            {"scheme", "bdk", "ksn"},
            {"scheme", "initial_key", "ksn"},
        ):
            raise PinPadConfigError(
                "pin pad: dukpt needs exactly scheme, ksn and one of initial_key or bdk"
            )
        scheme = raw["scheme"]
        if scheme not in ("tdes", "aes"):
            raise PinPadConfigError(f"pin pad: dukpt.scheme {scheme!r} is not tdes or aes")
        key_name = "initial_key" if "initial_key" in raw else "bdk"
        key = _hex_key(raw, key_name, (16,))
        ksn = _hex_key(raw, "ksn", (10,) if scheme == "tdes" else (8, 12))
        if len(ksn) == 8:
            ksn += bytes(4)  # an AES initial key ID alone: the counter starts at zero
        dukpt = DukptConfig(scheme, key, ksn, key_is_bdk=key_name == "bdk")
        if (fmt in TDES_FORMATS) != (scheme == "tdes"):
            raise PinPadConfigError(
                f"pin pad: pin_block_format {fmt} cannot be used with {scheme} DUKPT "
                "(formats 0, 1, 3 need TDES, format 4 needs AES)"
            )
    return PinPadConfig(tmk, algorithm, tdes, aes, fmt, dukpt)


@dataclass
class _Entry:
    """A PIN entry in progress. `digits` is the clear PIN: it never leaves this object."""

    pan: str
    pin_block_format: int
    source: KeySource
    min_length: int
    max_length: int
    timeout: float
    last_activity: float
    digits: str = ""

    def __repr__(self) -> str:
        return f"_Entry(format={self.pin_block_format}, typed={len(self.digits)})"


class PinPadEmulator(Emulator):
    """An encrypted PIN pad with a 0-9 keypad, enter, cancel, clear, backspace and F1..F8."""

    NAME = "pin_pad"
    FAULTS = fault_names(NAME)  # and their parameters: peripherals/fault_catalogue.py

    def __init__(
        self,
        config: PinPadConfig,
        clock: Clock = time.monotonic,
        *,
        state_dir: Path | None = None,
    ) -> None:
        super().__init__(clock)
        self.config = config
        self.state_dir = state_dir
        self._decoder = wire.FrameDecoder()
        self._last_frame: bytes | None = None
        self._sends = 0  # of the last frame
        self._keys: dict[Slot, bytes] = {}
        self._dukpt_key: bytes | None = None  # IPEK / initial key: the BDK stays at the factory
        self._ksn: bytes | None = None
        self._mode = Mode.IDLE
        self._entry: _Entry | None = None
        self._ready: wire.PinBlockData | None = None
        self._format = config.pin_block_format
        self._source = KeySource.DUKPT if config.dukpt else KeySource.FIXED
        self.tampered = False
        self.install()

    @classmethod
    def from_config(
        cls,
        section: Mapping[str, Any],
        *,
        clock: Clock = time.monotonic,
        state_dir: Path | None = None,
    ) -> PinPadEmulator:
        """Build from {"tmk", "pin_key_tdes", "pin_key_aes", "pin_block_format", "dukpt"}."""
        return cls(parse_config(section), clock, state_dir=state_dir)

    # ----- installation ---------------------------------------------------------------------

    def install(self) -> None:
        """What the key loading facility does: the TMK in clear, PIN keys as TR-31 blocks under
        it, the DUKPT initial key derived from the BDK. Also how a tampered pad is put back."""
        with self.lock:
            config = self.config
            self._keys = {Slot.MASTER: config.tmk}
            version = "B" if config.tmk_algorithm == "tdes" else "D"
            for slot, key, key_algorithm in (
                (Slot.PIN_TDES, config.pin_key_tdes, "T"),
                (Slot.PIN_AES, config.pin_key_aes, "A"),
            ):
                if key is not None:
                    header = tr31.Tr31Header(version, "P0", key_algorithm, "E")
                    self._load_key(slot, tr31.wrap(config.tmk, header, key))
            self._dukpt_key = None
            self._ksn = None
            if config.dukpt is not None:
                self._dukpt_key = config.dukpt.initial_key()
                self._ksn = self._restore_ksn(config.dukpt.ksn)
            self.tampered = False
            self._end_entry()

    def _ksn_file(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / "dukpt_ksn"

    def _restore_ksn(self, initial: bytes) -> bytes:
        """The last KSN used, so that a restart never reuses a DUKPT key."""
        path = self._ksn_file()
        if path is None or not path.exists():
            return initial
        try:
            saved = bytes.fromhex(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            log.warning("pin pad: unreadable %s; starting from the configured KSN", path)
            return initial
        if len(saved) != len(initial):
            return initial
        if len(initial) == dukpt_tdes.KSN_BYTES:
            same_device = dukpt_tdes.with_counter(saved, 0) == dukpt_tdes.with_counter(initial, 0)
            later = dukpt_tdes.counter(saved) >= dukpt_tdes.counter(initial)
        else:
            same_device = saved[:8] == initial[:8]
            later = dukpt_aes.counter(saved) >= dukpt_aes.counter(initial)
        return saved if same_device and later else initial

    def _save_ksn(self, ksn: bytes) -> None:
        path = self._ksn_file()
        if path is None:
            return
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w", encoding="ascii") as file:
            file.write(ksn.hex().upper())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)

    # ----- what tests and the kiosk see -----------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode.value

    @property
    def keys_loaded(self) -> bool:
        """Whether a PIN can be enciphered: a fixed PIN key or a DUKPT key is present."""
        return bool(
            self._keys.get(Slot.PIN_TDES) or self._keys.get(Slot.PIN_AES) or self._dukpt_key
        )

    @property
    def ksn(self) -> str | None:
        return None if self._ksn is None else self._ksn.hex().upper()

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                **super().status(),
                "mode": self.mode,
                "keys_loaded": self.keys_loaded,
                "tampered": self.tampered,
                "pin_block_format": self._format,
                "key_source": self._source_name(),
                "pin_ready": self._ready is not None,
                "slots": sorted(slot.value for slot in self._keys),
                "ksn": self.ksn,
            }

    def _source_name(self) -> str:
        if self._source is KeySource.FIXED or self.config.dukpt is None:
            return "fixed"
        return f"dukpt_{self.config.dukpt.scheme}"

    def press(self, key: str) -> None:
        """A customer presses one key: "0".."9", "enter", "cancel", "clear", "backspace", "F1"..
        "F8". Outside plain and PIN entry the keypad is off and presses are ignored."""
        if key not in KEYS:
            raise ValueError(f"unknown key {key!r}; keys: {', '.join(KEYS)}")
        with self.lock:
            stuck = self.faults.active()
            if any(f.name == STUCK_KEY_FAULT and f.params.get("key") == key for f in stuck):
                return  # the key is held down: no new press is ever seen
            if self.faults.is_armed("unresponsive"):
                return
            if self._mode is Mode.PLAIN:
                self._plain_key(key)
            elif self._mode is Mode.PIN_ENTRY:
                self._pin_key(key)

    def tamper(self) -> None:
        """The tamper switch opens: every key is erased and a tamper event goes out."""
        with self.lock:
            self._keys.clear()
            self._dukpt_key = None
            self._ksn = None
            self._end_entry()
            self.tampered = True
            self._event(wire.KeyEvent("tamper"))

    def clear_fault(self, name: str | None = None) -> None:
        """The operator clears a fault; clearing tamper re-installs the keys as at installation."""
        with self.lock:
            self.faults.clear(name)
            if name in (None, "tamper") and self.tampered:
                self.install()

    # ----- keypad ----------------------------------------------------------------------------

    def _key_event(self, key: str, masked: bool) -> wire.KeyEvent:
        if key.isdigit():
            return wire.KeyEvent("digit", "*" if masked else key)
        if key in wire.FUNCTION_KEYS:
            return wire.KeyEvent("function", key)
        return wire.KeyEvent(key)

    def _plain_key(self, key: str) -> None:
        self._event(self._key_event(key, masked=False))

    def _pin_key(self, key: str) -> None:
        entry = self._entry
        assert entry is not None
        entry.last_activity = self.clock()
        if key.isdigit():
            if len(entry.digits) >= entry.max_length:
                return  # the pad beeps; nothing more is taken
            entry.digits += key
        elif key == "enter":
            if len(entry.digits) < entry.min_length:
                return  # too short: enter is refused and entry goes on
            self._finish(entry)
        elif key == "cancel":
            self._end_entry()
        elif key == "clear":
            entry.digits = ""
        elif key == "backspace":
            entry.digits = entry.digits[:-1]
        self._event(self._key_event(key, masked=True))

    def _finish(self, entry: _Entry) -> None:
        """Encipher the PIN at once and forget it; only the block waits for the driver."""
        try:
            self._ready = self._encipher(entry)
        except DeviceError as err:
            log.warning("pin pad: PIN block not made: %s", err)
            self._ready = None
        finally:
            entry.digits = ""
            self._entry = None
            self._mode = Mode.IDLE

    def _encipher(self, entry: _Entry) -> wire.PinBlockData:
        fmt = entry.pin_block_format
        if entry.source is KeySource.FIXED:
            key = self._fixed_key(fmt)
            return wire.PinBlockData(
                fmt, encrypt_pin_block(fmt, key, entry.digits, entry.pan), None
            )
        dukpt = self.config.dukpt
        assert dukpt is not None and self._dukpt_key is not None and self._ksn is not None
        ksn = self._next_ksn(dukpt.scheme, self._ksn)
        if dukpt.scheme == "tdes":
            key = dukpt_tdes.pin_key(dukpt_tdes.transaction_key(self._dukpt_key, ksn))
        else:
            transaction = dukpt_aes.transaction_key(self._dukpt_key, ksn)
            key = dukpt_aes.pin_encryption_key(transaction, ksn)
        self._ksn = ksn
        self._save_ksn(ksn)
        block = encrypt_pin_block(fmt, key, entry.digits, entry.pan)
        return wire.PinBlockData(fmt, block, ksn.hex().upper())

    @staticmethod
    def _next_ksn(scheme: str, ksn: bytes) -> bytes:
        try:
            if scheme == "tdes":
                return dukpt_tdes.next_ksn(ksn)
            return dukpt_aes.next_ksn(ksn)
        except DukptError:
            raise DeviceError(ErrorCode.DUKPT_EXHAUSTED) from None

    def _fixed_key(self, fmt: int) -> bytes:
        slot = Slot.PIN_AES if fmt in AES_FORMATS else Slot.PIN_TDES
        key = self._keys.get(slot)
        if key is None:
            raise DeviceError(ErrorCode.KEY_NOT_LOADED)
        return key

    def _end_entry(self) -> None:
        if self._entry is not None:
            self._entry.digits = ""
        self._entry = None
        self._ready = None
        self._mode = Mode.IDLE

    # ----- timers ----------------------------------------------------------------------------

    def timer_running(self) -> bool:
        return self._entry is not None or self.faults.is_armed("tamper")

    def holds_partial_frame(self) -> bool:
        return self._decoder.partial

    def tick(self, now: float) -> None:
        with self.lock:
            if self.faults.take("tamper") is not None and not self.tampered:
                self.tamper()
            self._handle(self._decoder.expire(now))
            entry = self._entry
            if entry is not None and now - entry.last_activity >= entry.timeout:
                self._end_entry()
                self._event(wire.KeyEvent("timeout"))

    # ----- the wire --------------------------------------------------------------------------

    def _send_frame(self, text: str) -> None:
        if self.faults.is_armed("unresponsive"):
            return
        frame = wire.encode_frame(text)
        self._last_frame = frame
        self._sends = 1
        self.send(frame)

    def _event(self, event: wire.KeyEvent) -> None:
        self._send_frame(wire.encode_event(event))

    def receive(self, data: bytes) -> None:
        with self.lock:
            if self.faults.is_armed("unresponsive"):
                self._decoder.reset()
                return
            self._handle(self._decoder.feed(data, self.clock()))

    def _handle(self, events: list[FrameEvent[str]]) -> None:
        for event in events:
            if event.frame is not None:
                self.send(bytes([wire.ACK]))
                self.faults.command_seen()
                if self.faults.take("tamper") is not None and not self.tampered:
                    self.tamper()
                self._send_frame(wire.encode_reply(self._execute(event.frame)))
            elif event.nak:
                log.info("pin pad: bad frame (%s); NAK", event.error)
                self.send(bytes([wire.NAK]))
            elif event.control == wire.ACK:
                self._last_frame = None
            elif (
                event.control == wire.NAK
                and self._last_frame is not None
                and self._sends < wire.REPLY_SENDS
            ):
                self._sends += 1
                self.send(self._last_frame)

    def _execute(self, text: str) -> wire.Reply:
        code = text[:2]
        try:
            command = wire.decode_command(text)
            return wire.Reply(code, wire.OK, self._run(command))
        except wire.PinPadCodecError as err:
            reply_to = code if code in wire.COMMAND_CODES else "ST"
            if err.code is ErrorCode.UNKNOWN_COMMAND:
                log.info("pin pad: unknown command %r", code)
            return wire.Reply(reply_to, err.code.value)
        except DeviceError as err:
            return wire.Reply(code, err.code.value)
        except Exception:  # a device bug answers EF, it does not kill the link
            log.exception("pin pad: command %s failed", code)
            return wire.Reply(code, ErrorCode.INTERNAL.value)

    def _run(self, command: wire.Command) -> str:
        match command:
            case wire.Status():
                return wire.encode_status(
                    wire.StatusData(
                        self._mode,
                        self.keys_loaded,
                        self.tampered,
                        self._ready is not None,
                        self._format,
                        self._source_name(),
                    )
                )
            case wire.LoadKey(slot, block):
                self._refuse_if_tampered()
                return self._load_key(slot, block)
            case wire.ReadKeyCheckValue(slot):
                self._refuse_if_tampered()
                key = self._keys.get(slot)
                if key is None:
                    raise DeviceError(ErrorCode.KEY_NOT_LOADED)
                return key_check_value(key, self._algorithm(slot))
            case wire.SelectPinBlock(fmt, source):
                self._select(fmt, source)
            case wire.StartPinEntry():
                self._start_pin_entry(command)
            case wire.GetPinBlock():
                self._refuse_if_tampered()
                ready, self._ready = self._ready, None
                if ready is None:
                    raise DeviceError(ErrorCode.NO_PIN_BLOCK)
                return wire.encode_pin_block(ready)
            case wire.Cancel() | wire.StopEntry():
                self._end_entry()
            case wire.StartPlainEntry():
                self._end_entry()
                self._mode = Mode.PLAIN
        return ""

    def _refuse_if_tampered(self) -> None:
        if self.tampered:
            raise DeviceError(ErrorCode.TAMPERED)

    def _algorithm(self, slot: Slot) -> Algorithm:
        if slot is Slot.PIN_AES or (slot is Slot.MASTER and self.config.tmk_algorithm == "aes"):
            return "aes"
        return "tdes"

    def _load_key(self, slot: Slot, block: str) -> str:
        """Unwrap a TR-31 block under the TMK into `slot`; returns the new key's check value."""
        tmk = self._keys.get(Slot.MASTER)
        if tmk is None:
            raise DeviceError(ErrorCode.NO_MASTER_KEY)
        try:
            header, key = tr31.unwrap(tmk, block)
        except (tr31.Tr31Error, ValueError):
            raise DeviceError(ErrorCode.KEY_BLOCK_REJECTED) from None
        wanted_version = "B" if self.config.tmk_algorithm == "tdes" else "D"
        algorithm = self._algorithm(slot)
        usage = "K0" if slot is Slot.MASTER else "P0"
        sizes = (16, 24) if algorithm == "tdes" else (16, 24, 32)
        if (
            header.version != wanted_version
            or header.key_usage != usage
            or header.algorithm != ("T" if algorithm == "tdes" else "A")
            or header.mode_of_use not in ("E", "B")
            or len(key) not in sizes
        ):
            raise DeviceError(ErrorCode.KEY_USAGE_WRONG)
        if slot is Slot.MASTER:
            # a new master key makes the keys wrapped under the old one meaningless
            self._keys = {}
        self._keys[slot] = key
        return key_check_value(key, algorithm)

    def _select(self, fmt: int, source: KeySource) -> None:
        if self._mode is Mode.PIN_ENTRY:
            raise DeviceError(ErrorCode.WRONG_MODE)
        self._check_format(fmt, source)
        self._format, self._source = fmt, source

    def _check_format(self, fmt: int, source: KeySource) -> None:
        if fmt not in wire.PIN_FORMATS:
            raise DeviceError(ErrorCode.BAD_PARAMETER)
        if source is KeySource.DUKPT:
            if self.config.dukpt is None:
                raise DeviceError(ErrorCode.DUKPT_NOT_CONFIGURED)
            if (fmt in TDES_FORMATS) != (self.config.dukpt.scheme == "tdes"):
                raise DeviceError(ErrorCode.FORMAT_NOT_USABLE)

    def _start_pin_entry(self, command: wire.StartPinEntry) -> None:
        self._refuse_if_tampered()
        fmt = command.pin_block_format
        self._check_format(fmt, self._source)
        low, high = command.min_length, command.max_length
        if low not in wire.PIN_LENGTHS or high not in wire.PIN_LENGTHS or low > high:
            raise DeviceError(ErrorCode.PIN_LENGTH_INVALID)
        if not 12 <= len(command.pan) <= 19:
            raise DeviceError(ErrorCode.PAN_INVALID)
        if not 1 <= command.timeout_seconds <= 999:
            raise DeviceError(ErrorCode.BAD_PARAMETER)
        if self._source is KeySource.FIXED:
            self._fixed_key(fmt)
        else:
            if self._dukpt_key is None or self._ksn is None or self.config.dukpt is None:
                raise DeviceError(ErrorCode.KEY_NOT_LOADED)
            self._next_ksn(self.config.dukpt.scheme, self._ksn)  # exhausted: refuse now
        self._end_entry()
        self._entry = _Entry(
            pan=command.pan,
            pin_block_format=fmt,
            source=self._source,
            min_length=low,
            max_length=high,
            timeout=float(command.timeout_seconds),
            last_activity=self.clock(),
        )
        self._mode = Mode.PIN_ENTRY
