"""Driver of the cash dispenser (LCDM-2000 framing with ATM extensions) and the note planner.

Each exchange: command, ACK, reply, ACK; NAK or silence re-sends, at most three tries in all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, TypeVar

from device.controller.device_status import (
    CassetteState,
    CassetteStatus,
    DispenseResult,
    DispenserStatus,
    PresentOutcome,
    PresentResult,
    RetractResult,
    Shutter,
)
from device.controller.ports import DeviceFault, DeviceTimeout, DriverError
from device.drivers.base import ExchangeRules, SerialDriver
from peripherals.wire import cash_dispenser as wire
from peripherals.wire.cash_dispenser import ErrorCode

R = TypeVar("R", bound=wire.Reply)

# Time the device may take per note of a dispense, on top of the driver's timeout: picking,
# checking and stacking (and the device saving its counters at every step).
NOTE_SECONDS = 0.1


class DispenserError(DeviceFault):
    """The dispenser answered with an error: `code` is its name, e.g. "shutter_jam"."""


# ----- the planner ----------------------------------------------------------------------------


def _spread(notes: int, units: list[Any]) -> dict[int, int] | None:
    """`notes` of one denomination over its cassettes, always from the fullest (balance)."""
    left = {u.number: int(u.count) for u in units}
    taken = dict.fromkeys(left, 0)
    for _ in range(notes):
        candidates = [n for n in left if left[n] > 0 and taken[n] < wire.MAX_NOTES_PER_CASSETTE]
        if not candidates:
            return None
        pick = max(candidates, key=lambda n: (left[n], -n))
        left[pick] -= 1
        taken[pick] += 1
    return {n: k for n, k in taken.items() if k}


def plan_notes(amount: int, cassettes: Sequence[Any]) -> dict[int, int] | None:
    """Notes per cassette that make up `amount` cents exactly, or None if impossible.

    Fewest notes first; among plans with as few notes, the one that drains the smallest share of
    any denomination; notes of one denomination come from its fullest cassettes. Only cassettes
    in state ok or low are used, at most 99 notes each and STACKER_CAPACITY in all.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return None
    groups: dict[int, list[Any]] = {}
    for unit in cassettes:
        if unit.state in ("ok", "low") and unit.count > 0 and unit.denomination > 0:
            groups.setdefault(int(unit.denomination), []).append(unit)
    denominations = sorted(groups, reverse=True)
    available = {
        d: sum(min(int(u.count), wire.MAX_NOTES_PER_CASSETTE) for u in groups[d])
        for d in denominations
    }
    gcd_from = [
        math.gcd(*denominations[i:]) if denominations[i:] else 0
        for i in range(len(denominations) + 1)
    ]
    best: tuple[tuple[int, Fraction], list[int]] | None = None

    def search(index: int, remaining: int, chosen: list[int], notes: int) -> None:
        nonlocal best
        if remaining == 0:
            share = max(
                (
                    Fraction(k, available[d])
                    for d, k in zip(denominations, chosen, strict=False)
                    if k
                ),
                default=Fraction(0),
            )
            key = (notes, share)
            if best is None or key < best[0]:
                best = (key, chosen + [0] * (len(denominations) - len(chosen)))
            return
        if index == len(denominations) or remaining % gcd_from[index]:
            return
        denomination = denominations[index]
        lower_bound = notes + -(-remaining // denomination)
        if lower_bound > wire.STACKER_CAPACITY or (best is not None and lower_bound > best[0][0]):
            return
        most = min(available[denomination], remaining // denomination)
        for count in range(most, -1, -1):
            search(index + 1, remaining - count * denomination, [*chosen, count], notes + count)

    search(0, amount, [], 0)
    if best is None:
        return None
    plan: dict[int, int] = {}
    for denomination, count in zip(denominations, best[1], strict=True):
        if count:
            spread = _spread(count, groups[denomination])
            if spread is None:
                return None
            plan.update(spread)
    return dict(sorted(plan.items()))


# ----- the driver -----------------------------------------------------------------------------


def _stale(reply: wire.Reply, command: wire.Command) -> bool:
    return (
        isinstance(reply, wire.DispenseMixReply)
        and isinstance(command, wire.DispenseMix)
        and reply.sequence != command.sequence
    )


class CashDispenserDriver(SerialDriver):
    """A cash dispenser on a serial link: a pty path, /dev/tty*, socket:// or loop://."""

    RULES = ExchangeRules(
        sends=wire.COMMAND_SENDS,
        ack_timeout=wire.ACK_TIMEOUT,
        resend_unanswered=True,  # the device answers a repeated dispense from its memory
        naks_per_send=wire.REPLY_SENDS - 1,  # past that the device sends its reply no more
    )

    def __init__(self, url: str, *, timeout: float = wire.REPLY_TIMEOUT) -> None:
        super().__init__(url, timeout=timeout)
        self._reader = wire.FrameReader.for_host()

    plan = staticmethod(plan_notes)

    # ----- one exchange ----------------------------------------------------------------------

    def _exchange(self, command: wire.Command, kind: type[R], *, work: float = 0.0) -> R:
        """The reply to `command`; after the ACK the device has `timeout` + `work` seconds."""
        frame = command.encode()
        self.discard_input(self._reader)
        reply = self.exchange(
            self._reader,
            frame,
            lambda found: self._match(found, command),
            self.RULES,
            label=f"command 0x{command.CMD:02X}",
            reply_timeout=self.timeout + work,
        )
        if isinstance(reply, wire.UndefinedReply):
            raise DispenserError(
                f"{self.url}: command 0x{command.CMD:02X} not known to the device",
                reply.error.label,
            )
        try:
            return wire.as_reply(kind, reply)
        except wire.DispenserCodecError as err:
            raise DispenserError(f"{self.url}: {err}", "protocol") from err

    def _match(self, frame: wire.Frame, command: wire.Command) -> wire.Reply | None:
        """The reply in `frame` if it answers `command`; None for a late reply to an earlier one."""
        try:
            reply = wire.decode_reply(frame)
        except wire.DispenserCodecError as err:
            raise DispenserError(f"{self.url}: bad reply: {err}", "protocol") from err
        if reply.cmd != command.CMD or _stale(reply, command):
            return None
        return reply

    @staticmethod
    def _check(reply: wire.Reply, what: str) -> None:
        if not reply.ok:
            raise DispenserError(
                f"cash dispenser: {what} failed: {reply.error.label}", reply.error.label
            )

    # ----- the public surface ----------------------------------------------------------------

    def status(self) -> DispenserStatus:
        reply = self._exchange(wire.ExtStatusCommand(), wire.ExtStatusReply)
        self._check(reply, "status")
        return DispenserStatus(
            cassettes=[
                CassetteStatus(
                    c.number,
                    c.denomination,
                    c.currency,
                    c.count,
                    c.capacity,
                    c.low_threshold,
                    CassetteState(c.state),
                )
                for c in reply.cassettes
            ],
            stacker_notes=reply.stacker_notes,
            presented_notes=reply.presented_notes,
            shutter=Shutter(reply.shutter),
            reject_notes=reply.reject_notes,
            retract_notes=reply.retract_notes,
            device_ok=reply.device_ok,
            stacker_amount=reply.stacker_amount,
            presented_amount=reply.presented_amount,
            transport_notes=reply.transport_notes,
            reject_amount=reply.reject_amount,
            retract_amount=reply.retract_amount,
            last_outcome=PresentOutcome(reply.outcome),
        )

    def rom_version(self) -> str:
        return self._exchange(wire.RomVersionCommand(), wire.RomVersionReply).version

    def dispense(self, notes: dict[int, int], *, transaction: int) -> DispenseResult:
        """Pick `notes` (cassette number: count) into the stacker under `transaction` (0..99).

        The same call repeated with the same transaction number, with no note movement in
        between, is answered from the device's memory and dispenses nothing more.
        """
        if isinstance(transaction, bool) or not isinstance(transaction, int):
            raise ValueError(f"transaction {transaction!r} is not a whole number")
        if not 0 <= transaction <= 99:
            raise ValueError(f"transaction {transaction} is not in 0..99")
        counts = [0] * wire.CASSETTE_SLOTS
        for number, count in notes.items():
            if not 1 <= number <= wire.CASSETTE_SLOTS:
                raise ValueError(f"no cassette slot {number}; slots are 1..{wire.CASSETTE_SLOTS}")
            if isinstance(count, bool) or not 0 <= count <= wire.MAX_NOTES_PER_CASSETTE:
                raise ValueError(f"cassette {number}: {count!r} notes is not in 0..99")
            counts[number - 1] = count
        if not any(counts):
            raise ValueError("dispense of no notes")
        reply = self._exchange(
            wire.DispenseMix(transaction, tuple(counts)),
            wire.DispenseMixReply,
            work=NOTE_SECONDS * sum(counts),
        )
        slots = {i + 1: c for i, c in enumerate(reply.cassettes)}
        dispensed = {n: c.stacked for n, c in slots.items() if c.stacked or counts[n - 1]}
        error = None if reply.ok else reply.error.label
        return DispenseResult(
            dispensed=dispensed,
            rejected={n: c.rejected for n, c in slots.items() if c.rejected},
            error=error,
            ok=error is None and all(dispensed.get(n, 0) == k for n, k in notes.items()),
            amount=reply.stacker_amount,
            in_transport={n: c.transport for n, c in slots.items() if c.transport},
            picked={n: c.picked for n, c in slots.items() if c.picked},
            repeated=reply.repeated,
        )

    def present(self) -> PresentResult:
        """Open the shutter and present the stacker to the customer."""
        reply = self._exchange(wire.PresentCommand(), wire.PresentReply)
        return PresentResult(
            presented_amount=reply.amount if reply.ok else 0,
            ok=reply.ok,
            error=None if reply.ok else reply.error.label,
            notes=reply.notes if reply.ok else 0,
        )

    def taken(self) -> bool:
        """Whether the customer took the notes last presented."""
        reply = self._exchange(wire.TakenCommand(), wire.TakenReply)
        self._check(reply, "taken query")
        return reply.outcome == "taken"

    def retract(self) -> RetractResult:
        """Presented notes back into the retract bin; counted from the bin, so a command the
        device ran twice (a lost reply) still gives the true figures."""
        before = self.status()
        reply = self._exchange(wire.RetractCommand(), wire.RetractReply)
        self._check(reply, "retract")
        return RetractResult(
            notes=reply.bin_notes - before.retract_notes,
            amount=reply.bin_amount - before.retract_amount,
        )

    def purge(self) -> int:
        """Stacker and transport into the reject bin (LCDM purge); returns the notes moved."""
        before = self.status()
        reply = self._exchange(wire.PurgeCommand(), wire.PurgeReply)
        self._check(reply, "purge")
        return self.status().reject_notes - before.reject_notes

    def replenish(self, counts: dict[int, int], *, empty_bins: bool = False) -> None:
        """New note counts for the cassettes given (others unchanged); `empty_bins` when the
        reject and retract bins were emptied too."""
        slots: list[int | None] = [None] * wire.CASSETTE_SLOTS
        for number, count in counts.items():
            if not 1 <= number <= wire.CASSETTE_SLOTS:
                raise ValueError(f"no cassette slot {number}; slots are 1..{wire.CASSETTE_SLOTS}")
            if isinstance(count, bool) or not 0 <= count <= 9999:
                raise ValueError(f"cassette {number}: {count!r} notes is not in 0..9999")
            slots[number - 1] = count
        reply = self._exchange(wire.Exchange(empty_bins, tuple(slots)), wire.ExchangeReply)
        self._check(reply, "replenishment")

    def counters(self) -> dict[str, int]:
        reply = self._exchange(wire.CountersCommand(), wire.CountersReply)
        self._check(reply, "counters")
        return reply.as_dict()

    def lcdm_status(self) -> tuple[ErrorCode, int, int]:
        """The LCDM status command: error code and the two sensor bytes."""
        reply = self._exchange(wire.StatusCommand(), wire.StatusReply)
        return reply.error, reply.sensors0, reply.sensors1


__all__ = [
    "CashDispenserDriver",
    "CassetteStatus",
    "DeviceTimeout",
    "DispenseResult",
    "DispenserError",
    "DispenserStatus",
    "DriverError",
    "PresentResult",
    "RetractResult",
    "plan_notes",
]
