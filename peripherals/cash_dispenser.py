"""The emulated cash dispenser: LCDM-2000 framing, up to four cassettes, stacker, shutter, bins.

Every note is in exactly one place (see peripherals.cassettes.NoteLedger); faults act on the way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from peripherals.cassettes import (
    CassetteConfigError,
    CassetteLoad,
    CassetteState,
    NoteLedger,
    load_cassette_file,
    parse_cassette_load,
)
from peripherals.emulator import Clock, Emulator
from peripherals.fault_catalogue import fault_names
from peripherals.wire import cash_dispenser as wire
from peripherals.wire.cash_dispenser import Cmd, ErrorCode

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OVER_REJECT_LIMIT = 10  # more rejected notes than this in one dispense stops it


@dataclass(frozen=True)
class CassetteView:
    number: int
    denomination: int
    currency: str
    count: int
    capacity: int
    low_threshold: int
    state: str


@dataclass(frozen=True)
class NoteStack:
    """Notes in one place, per cassette they came from; `amount` in cents."""

    by_cassette: Mapping[int, int]
    amount: int

    @property
    def notes(self) -> int:
        return sum(self.by_cassette.values())


class CashDispenserEmulator(Emulator):
    """A cash dispenser speaking the LCDM-2000 protocol and its extensions (see the docs)."""

    NAME = "cash_dispenser"
    FAULTS = fault_names(NAME)  # and their parameters: peripherals/fault_catalogue.py
    ROM_VERSION: ClassVar[str] = "ATMCDM01"

    def __init__(
        self,
        load: CassetteLoad,
        *,
        clock: Clock = time.monotonic,
        state_dir: Path | None = None,
        rom_version: str = ROM_VERSION,
    ) -> None:
        super().__init__(clock)
        if not rom_version or len(rom_version) > 16 or not rom_version.isascii():
            raise CassetteConfigError(f"cash dispenser: rom_version {rom_version!r}: 1..16 ASCII")
        self.rom_version = rom_version
        self.ledger = NoteLedger.open(load, state_dir)
        self.ledger.device.setdefault("shutter", "closed")
        self.ledger.device.setdefault("outcome", "none")
        self.ledger.device.setdefault("last_dispense", None)
        self._reader = wire.FrameReader.for_device()
        self._unacked: bytes | None = None
        self._sends = 0  # of the unacknowledged reply
        self.duplicates_answered = 0  # re-sent dispenses answered from memory
        self.naks_sent = 0

    @classmethod
    def from_config(
        cls,
        section: Mapping[str, Any],
        *,
        clock: Clock = time.monotonic,
        state_dir: Path | None = None,
    ) -> CashDispenserEmulator:
        """Build from {"cassettes": "config/cassettes/default.yaml"} or inline cassettes
        ({"cassettes": {"currency": "978", "cassettes": [...]}} or a list); "rom_version"."""
        known = {"cassettes", "rom_version"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise CassetteConfigError(
                f"cash dispenser: unknown keys {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        if "cassettes" not in section:
            raise CassetteConfigError("cash dispenser: cassettes: missing (a file or a list)")
        raw = section["cassettes"]
        if isinstance(raw, str | Path):
            path = Path(raw).expanduser()
            if not path.is_absolute() and not path.exists():
                path = PROJECT_ROOT / path
            load = load_cassette_file(path)
        else:
            load = parse_cassette_load(raw, "cash_dispenser.cassettes")
        rom = section.get("rom_version", cls.ROM_VERSION)
        if not isinstance(rom, str):
            raise CassetteConfigError(f"cash dispenser: rom_version {rom!r} is not a string")
        return cls(load, clock=clock, state_dir=state_dir, rom_version=rom)

    # ----- the test and kiosk side -----------------------------------------------------------

    def _stack(self, place: str) -> NoteStack:
        with self.lock:
            return NoteStack(dict(self.ledger.places[place]), self.ledger.amount(place))

    @property
    def cassettes(self) -> list[CassetteView]:
        with self.lock:
            return [
                CassetteView(
                    c.number,
                    c.denomination,
                    c.currency,
                    c.count,
                    c.capacity,
                    c.low_threshold,
                    self._cassette_state(c.number).value,
                )
                for c in self.ledger.cassettes.values()
            ]

    @property
    def stacker(self) -> NoteStack:
        return self._stack("stacker")

    @property
    def transport(self) -> NoteStack:
        return self._stack("transport")

    @property
    def presented(self) -> NoteStack:
        return self._stack("presented")

    @property
    def taken_notes(self) -> NoteStack:
        return self._stack("taken")

    @property
    def reject_bin(self) -> NoteStack:
        return self._stack("reject")

    @property
    def retract_bin(self) -> NoteStack:
        return self._stack("retract")

    @property
    def counters(self) -> dict[str, int]:
        with self.lock:
            return dict(self.ledger.counters)

    @property
    def shutter(self) -> str:
        with self.lock:
            return str(self.ledger.device["shutter"])

    def total_notes(self) -> int:
        """Cassettes, transport, stacker, exit, customer and both bins: constant but for
        replenishment."""
        with self.lock:
            return self.ledger.total()

    def take_cash(self) -> int:
        """The customer takes the presented notes (unless `notes_not_taken` is armed)."""
        with self.lock:
            if self.faults.is_armed("notes_not_taken") or not self.ledger.notes("presented"):
                return 0
            self.ledger.device["outcome"] = "taken"
            self.ledger.device["shutter"] = "closed"
            return sum(self.ledger.take().values())

    def leave_cash(self) -> None:
        """The customer does not take the notes (a marker for scripts: nothing happens)."""

    def clear_fault(self, name: str | None = None) -> None:
        """The operator fixed the device: clear faults; a shutter no longer jammed closes."""
        with self.lock:
            self.faults.clear(name)
            self._reset_shutter()

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                **super().status(),
                "cassettes": [vars(c) for c in self.cassettes],
                "transport": self.ledger.notes("transport"),
                "stacker": self.ledger.notes("stacker"),
                "presented": self.ledger.notes("presented"),
                "reject_bin": self.ledger.notes("reject"),
                "retract_bin": self.ledger.notes("retract"),
                "shutter": self.ledger.device["shutter"],
                "device_ok": self._device_ok(),
                "counters": dict(self.ledger.counters),
            }

    # ----- device state ----------------------------------------------------------------------

    def _fault_cassette(self, name: str) -> int | None:
        """The cassette a cassette fault names while it is armed (state faults do not fire)."""
        for fault in self.faults.active():
            if fault.name == name:
                return int(fault.params.get("cassette", 1))
        return None

    def _missing(self, number: int) -> bool:
        return (
            number not in self.ledger.cassettes
            or self._fault_cassette("cassette_missing") == number
        )

    def _cassette_state(self, number: int) -> CassetteState:
        if self._missing(number):
            return CassetteState.MISSING
        empty_sensor = self._fault_cassette("cassette_empty") == number
        return self.ledger.cassettes[number].state(empty_sensor=empty_sensor)

    def _device_ok(self) -> bool:
        return not self.ledger.notes("transport") and self.ledger.device["shutter"] != "jammed"

    def _reset_shutter(self) -> None:
        if self.ledger.device["shutter"] == "jammed" and not self.faults.is_armed("shutter_jam"):
            self.ledger.device["shutter"] = "closed"
            self.ledger.save()

    def _forget_dispense(self) -> None:
        """A note movement other than the dispense itself: a later equal command is new."""
        self.ledger.device["last_dispense"] = None

    # ----- bytes in, bytes out ---------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        for event in self._reader.feed(data, self.clock()):
            if event.frame is not None:
                self._on_frame(event.frame)
            elif event.nak:
                self.naks_sent += 1
                self.send(bytes([wire.NAK]))
            elif event.control is not None:
                self._on_control(event.control)

    def _on_control(self, byte: int) -> None:
        if byte == wire.ACK:
            self._unacked = None
        elif self._unacked is not None and self._sends < wire.REPLY_SENDS:
            self._sends += 1
            self.send(self._unacked)

    def _on_frame(self, frame: wire.Frame) -> None:
        self.faults.command_seen()
        if self.faults.take("unresponsive") is not None:
            return
        self._unacked = None  # a new command acknowledges the last reply
        self.send(bytes([wire.ACK]))
        # One state write per command, before its reply: the notes it moved reach the file
        # together or not at all, and the reply tells only what the file holds.
        with self.ledger.saved_once():
            reply = self._execute(frame).encode()
        self._unacked = reply
        self._sends = 1
        self.send(reply)

    def _execute(self, frame: wire.Frame) -> wire.Reply:
        try:
            command = wire.decode_command(frame)
        except wire.DispenserCodecError:
            kind = wire.REPLY_TYPES.get(frame.cmd)
            if kind is None:
                return wire.UndefinedReply(ErrorCode.UNDEFINED_COMMAND, frame.cmd)
            failed = kind(ErrorCode.NOTE_REQUEST_ERROR)
            if isinstance(failed, wire.SingleDispenseReply):
                failed = replace(failed, command=frame.cmd)
            return failed
        if isinstance(command, wire.StatusCommand):
            return self._lcdm_status()
        if isinstance(command, wire.RomVersionCommand):
            return wire.RomVersionReply(ErrorCode.GOOD, self.rom_version)
        if isinstance(command, wire.PurgeCommand):
            return wire.PurgeReply(self._purge())
        if isinstance(command, wire.UpperDispense):  # LowerDispense too
            return self._lcdm_single(command)
        if isinstance(command, wire.BothDispense):
            return self._lcdm_both(command)
        if isinstance(command, wire.DispenseMix):
            return self._dispense_mix(command)
        if isinstance(command, wire.PresentCommand):
            return self._present()
        if isinstance(command, wire.TakenCommand):
            return wire.TakenReply(
                ErrorCode.GOOD, self.ledger.device["outcome"], self.ledger.notes("presented")
            )
        if isinstance(command, wire.RetractCommand):
            return self._retract()
        if isinstance(command, wire.CountersCommand):
            values = tuple(self.ledger.counters[name] for name in wire.COUNTER_NAMES)
            return wire.CountersReply(ErrorCode.GOOD, values)
        if isinstance(command, wire.ExtStatusCommand):
            return self._ext_status()
        assert isinstance(command, wire.Exchange)
        return wire.ExchangeReply(self._swap_cassettes(command))

    # ----- status ----------------------------------------------------------------------------

    def _lcdm_status(self) -> wire.StatusReply:
        s0 = s1 = 0
        if self.ledger.notes("transport"):
            s0 |= wire.S0_CHK1 | wire.S0_CHK2
        if self.ledger.notes("presented"):
            s0 |= wire.S0_EXIT
        if self._cassette_state(1) in (CassetteState.LOW, CassetteState.EMPTY):
            s0 |= wire.S0_UPPER_NEAR_END
        if self._cassette_state(2) in (CassetteState.LOW, CassetteState.EMPTY):
            s1 |= wire.S1_LOWER_NEAR_END
        if self._missing(1):
            s1 |= wire.S1_UPPER_CASSETTE_OUT
        if self._missing(2):
            s1 |= wire.S1_LOWER_CASSETTE_OUT
        error = ErrorCode.JAM_AT_CHK_SENSORS if self.ledger.notes("transport") else ErrorCode.GOOD
        return wire.StatusReply(error, s0, s1)

    def _ext_status(self) -> wire.ExtStatusReply:
        ledger = self.ledger
        return wire.ExtStatusReply(
            ErrorCode.GOOD,
            device_ok=self._device_ok(),
            shutter=ledger.device["shutter"],
            outcome=ledger.device["outcome"],
            stacker_notes=ledger.notes("stacker"),
            stacker_amount=ledger.amount("stacker"),
            transport_notes=ledger.notes("transport"),
            presented_notes=ledger.notes("presented"),
            presented_amount=ledger.amount("presented"),
            reject_notes=ledger.notes("reject"),
            reject_amount=ledger.amount("reject"),
            retract_notes=ledger.notes("retract"),
            retract_amount=ledger.amount("retract"),
            cassettes=tuple(
                wire.CassetteInfo(
                    c.number,
                    self._cassette_state(c.number).value,
                    c.currency,
                    c.denomination,
                    c.count,
                    c.capacity,
                    c.low_threshold,
                )
                for c in ledger.cassettes.values()
            ),
        )

    # ----- dispensing ------------------------------------------------------------------------

    def _dispense(self, counts: Mapping[int, int]) -> tuple[ErrorCode, dict[int, wire.MixCount]]:
        """Pick `counts` notes per cassette into the stacker, note by note, faults applied."""
        results = {n: [0, 0, 0, 0] for n in range(1, wire.CASSETTE_SLOTS + 1)}

        def outcome(code: ErrorCode) -> tuple[ErrorCode, dict[int, wire.MixCount]]:
            return code, {n: wire.MixCount(*values) for n, values in results.items()}

        ledger = self.ledger
        if ledger.notes("transport"):
            return outcome(ErrorCode.JAM_AT_CHK_SENSORS)
        if ledger.notes("stacker"):
            return outcome(ErrorCode.STACKER_BUSY)
        wanted = {n: k for n, k in sorted(counts.items()) if k}
        for number in wanted:
            if self._missing(number):
                return outcome(wire.missing_error(number))
            if self._fault_cassette("cassette_empty") == number:
                return outcome(wire.empty_error(number))
        ledger.counters["dispenses"] += 1
        jam = self.faults.take("jam")
        jam_after = int(jam.params.get("after_notes", 0)) if jam is not None else None
        double = self.faults.take("double_pick")
        doubles = int(double.params.get("count", 1)) if double is not None else 0
        double_on = double.params.get("cassette") if double is not None else None
        stacked = rejected = 0
        for number, need in wanted.items():
            unit = ledger.cassettes[number]
            counts_here = results[number]
            while need:
                if unit.count == 0:
                    return outcome(wire.empty_error(number))
                if jam_after is not None and stacked >= jam_after:
                    ledger.pick(number)
                    counts_here[0] += 1
                    counts_here[3] += 1
                    return outcome(ErrorCode.JAM_AT_CHK_SENSORS)
                if doubles and double_on in (None, number) and unit.count >= 2:
                    doubles -= 1
                    ledger.pick(number, 2)
                    counts_here[0] += 2
                    ledger.reject(number, 2)
                    counts_here[2] += 2
                    rejected += 2
                    if rejected > OVER_REJECT_LIMIT:
                        return outcome(ErrorCode.OVER_REJECT)
                    continue
                ledger.pick(number)
                counts_here[0] += 1
                ledger.stack(number)
                counts_here[1] += 1
                stacked += 1
                need -= 1
        return outcome(ErrorCode.GOOD)

    def _dispense_mix(self, command: wire.DispenseMix) -> wire.DispenseMixReply:
        counts = list(command.counts)
        last = self.ledger.device.get("last_dispense")
        if last and last["sequence"] == command.sequence and last["counts"] == counts:
            self.duplicates_answered += 1
            stored = wire.DispenseMixReply.parse(Cmd.DISPENSE_MIX, bytes.fromhex(last["reply"]))
            assert isinstance(stored, wire.DispenseMixReply)
            return replace(stored, repeated=True)
        total = sum(counts)
        if total == 0 or total > wire.STACKER_CAPACITY:
            return wire.DispenseMixReply(ErrorCode.NOTE_REQUEST_ERROR, command.sequence)
        if self.ledger.notes("presented"):
            return wire.DispenseMixReply(ErrorCode.STACKER_BUSY, command.sequence)
        self._forget_dispense()
        error, results = self._dispense({i + 1: k for i, k in enumerate(counts)})
        reply = wire.DispenseMixReply(
            error,
            command.sequence,
            False,
            self.ledger.amount("stacker"),
            tuple(results[n] for n in range(1, wire.CASSETTE_SLOTS + 1)),
        )
        self.ledger.device["last_dispense"] = {
            "sequence": command.sequence,
            "counts": counts,
            "reply": reply.data().hex(),
        }
        self.ledger.save()
        return reply

    def _lcdm_dispense(
        self, counts: Mapping[int, int]
    ) -> tuple[ErrorCode, dict[int, wire.MixCount], dict[int, int]]:
        """LCDM dispense: to the stacker, then straight out of the exit (no customer step)."""
        self._forget_dispense()
        error, results = self._dispense(counts)
        exited: dict[int, int] = {}
        if self.ledger.notes("stacker"):
            if self.faults.take("shutter_jam") is not None:
                self.ledger.device["shutter"] = "jammed"
                self.ledger.save()
                error = ErrorCode.SHUTTER_JAM if error is ErrorCode.GOOD else error
            else:
                self.ledger.device["shutter"] = "open"
                self.ledger.device["outcome"] = "presented"
                exited = self.ledger.present()
        return error, results, exited

    def _lcdm_status_byte(self, number: int) -> int:
        return wire.LCDM_CASSETTE_STATUS[self._cassette_state(number).value]

    def _lcdm_single(self, command: wire.UpperDispense) -> wire.SingleDispenseReply:
        number = 1 if command.CMD is Cmd.UPPER_DISPENSE else 2
        if not 1 <= command.count <= wire.LCDM_MAX_NOTES:
            return wire.SingleDispenseReply(ErrorCode.NOTE_REQUEST_ERROR, command.CMD)
        error, results, exited = self._lcdm_dispense({number: command.count})
        counts = results[number]
        return wire.SingleDispenseReply(
            error,
            command.CMD,
            checked=counts.picked,
            exited=exited.get(number, 0),
            cassette_status=self._lcdm_status_byte(number),
            rejected=counts.rejected,
        )

    def _lcdm_both(self, command: wire.BothDispense) -> wire.BothDispenseReply:
        upper, lower = command.upper, command.lower
        if upper > wire.LCDM_MAX_NOTES or lower > wire.LCDM_MAX_NOTES or not upper + lower:
            return wire.BothDispenseReply(ErrorCode.NOTE_REQUEST_ERROR)
        error, results, exited = self._lcdm_dispense({1: upper, 2: lower})
        return wire.BothDispenseReply(
            error,
            upper_checked=results[1].picked,
            upper_exited=exited.get(1, 0),
            lower_checked=results[2].picked,
            lower_exited=exited.get(2, 0),
            upper_status=self._lcdm_status_byte(1),
            lower_status=self._lcdm_status_byte(2),
            upper_rejected=results[1].rejected,
            lower_rejected=results[2].rejected,
        )

    # ----- present, retract, purge, exchange -------------------------------------------------

    def _present(self) -> wire.PresentReply:
        ledger = self.ledger
        if not ledger.notes("stacker"):
            if ledger.notes("presented"):
                # a re-sent present: the notes are already out
                return wire.PresentReply(
                    ErrorCode.GOOD,
                    ledger.notes("presented"),
                    ledger.amount("presented"),
                    ledger.device["shutter"],
                )
            return wire.PresentReply(ErrorCode.STACKER_EMPTY, shutter=ledger.device["shutter"])
        self._forget_dispense()
        if self.faults.take("shutter_jam") is not None:
            ledger.device["shutter"] = "jammed"
            ledger.save()
            return wire.PresentReply(ErrorCode.SHUTTER_JAM, shutter="jammed")
        ledger.device["shutter"] = "open"
        ledger.device["outcome"] = "presented"
        ledger.present()
        return wire.PresentReply(
            ErrorCode.GOOD, ledger.notes("presented"), ledger.amount("presented"), "open"
        )

    def _retract(self) -> wire.RetractReply:
        ledger = self.ledger
        moved: dict[int, int] = {}
        if ledger.notes("presented"):
            self._forget_dispense()
            ledger.device["outcome"] = "retracted"
            ledger.device["shutter"] = "closed"
            moved = ledger.retract()
        amount = sum(ledger.cassettes[n].denomination * k for n, k in moved.items())
        return wire.RetractReply(
            ErrorCode.GOOD,
            sum(moved.values()),
            amount,
            ledger.notes("retract"),
            ledger.amount("retract"),
        )

    def _purge(self) -> ErrorCode:
        self._forget_dispense()
        self._reset_shutter()
        self.ledger.purge()
        return ErrorCode.GOOD

    def _swap_cassettes(self, command: wire.Exchange) -> ErrorCode:
        ledger = self.ledger
        if any(ledger.notes(place) for place in ("transport", "stacker", "presented")):
            return ErrorCode.STACKER_BUSY
        counts = {i + 1: k for i, k in enumerate(command.counts) if k is not None}
        try:
            self._forget_dispense()
            ledger.replenish(counts, empty_bins=command.empty_bins)
        except ValueError:
            return ErrorCode.NOTE_REQUEST_ERROR
        return ErrorCode.GOOD
