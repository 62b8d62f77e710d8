"""What the kiosk window shows: the fascia's and the operator panel's texts, labels and states,
computed from the simulated ATM's state as plain records, with no pygame and no window.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from config.card_numbers import mask_pan

if TYPE_CHECKING:
    from device.journal import JournalEntry
    from device.sim.simulated_atm import SimulatedAtm

SERVICE_STATES = ("idle", "out_of_service", "supervisor")
PAN_LIKE = re.compile(r"\b\d{13,19}\b")
StatusLine = tuple[str, str]  # (kind: title/text/warn/dim, text)


@dataclass(frozen=True)
class NotePile:
    denomination: int  # cents
    count: int


@dataclass(frozen=True)
class WalletEntry:
    card_id: str
    label: str


@dataclass(frozen=True)
class FasciaState:
    """Everything the fascia shows, read from the controller's screen and the devices."""

    screen_lines: tuple[str, ...]
    function_labels: tuple[tuple[str, str], ...]  # (F1, "Withdraw cash")
    card_media: str  # none, gate, inside, jammed
    card_label: str  # the card in the reader (masked number), "" if none
    entry_enabled: bool
    notes: tuple[NotePile, ...]  # presented at the cash slot
    currency: str
    shutter: str
    cash_message: str
    receipts_waiting: int
    wallet: tuple[WalletEntry, ...]
    pressed: str = ""  # the key to draw pressed down
    blink: bool = False
    in_service: bool = True


@dataclass(frozen=True)
class CassetteRow:
    number: int
    label: str  # e.g. "1: EUR 20.00"
    count: int
    capacity: int


@dataclass(frozen=True)
class PanelState:
    """What the panel shows; built from device status and the journal."""

    tab: str
    status_lines: tuple[StatusLine, ...]
    catalogue: tuple[tuple[str, tuple[str, ...]], ...]  # target, its fault names
    armed: frozenset[str]  # "target:fault"
    host_control: str  # "running", "stopped" or "unavailable"
    supervisor: bool
    can_service: bool  # no customer session: replenishment and clearing are allowed
    message: str = ""
    journal: tuple[str, ...] = field(default_factory=tuple)
    cassettes: tuple[CassetteRow, ...] = field(default_factory=tuple)
    fault_mode: str = "persistent"  # how the next fault switched on fires: persistent or once


def money_text(cents: int, currency: str) -> str:
    return f"{currency} {cents // 100}" if cents % 100 == 0 else f"{currency} {cents / 100:.2f}"


# ----- the fascia ----------------------------------------------------------------------------


def note_piles(
    denominations: Mapping[int, int], by_cassette: Mapping[int, int]
) -> tuple[NotePile, ...]:
    """The presented notes as one pile a denomination, largest first: two cassettes of the
    same note make one pile, as the customer sees them."""
    piles: dict[int, int] = {}
    for cassette, count in by_cassette.items():
        value = denominations.get(cassette, 0)
        piles[value] = piles.get(value, 0) + count
    return tuple(NotePile(d, n) for d, n in sorted(piles.items(), reverse=True))


def blinks(entry_enabled: bool, card_media: str, has_notes: bool) -> bool:
    """Only an empty card slot taking cards and notes waiting blink: the fascia changes with
    the blink only then."""
    return (entry_enabled and card_media == "none") or has_notes


def cash_event(before: Mapping[str, int], after: Mapping[str, int]) -> tuple[str, bool]:
    """The cash slot's message for a change of the dispenser's counters, and whether it alerts;
    ("", False) when no notes were taken or retracted since `before`."""
    if after.get("retracted", 0) > before.get("retracted", 0):
        return "Notes retracted", True
    if after.get("taken", 0) > before.get("taken", 0):
        return "Cash taken", False
    return "", False


def fascia_state(
    atm: SimulatedAtm,
    *,
    cash_message: str,
    receipts_waiting: int,
    pressed: str,
    blink_phase: bool,
) -> FasciaState:
    """The fascia as the ATM stands; `blink_phase` is whether blinking lights are lit now."""
    bay = atm.bay
    screen = atm.controller.screen
    reader = bay.card_reader
    dispenser = bay.cash_dispenser
    notes = note_piles(
        {c.number: c.denomination for c in dispenser.cassettes},
        dispenser.presented.by_cassette,
    )
    card = reader.card
    return FasciaState(
        screen_lines=tuple(screen.lines),
        function_labels=tuple(sorted((k, v.label) for k, v in screen.keys.items())),
        card_media=reader.state.value,
        card_label=card.masked_pan if card is not None else "",
        entry_enabled=reader.entry_enabled,
        notes=notes,
        currency=currency(atm),
        shutter=dispenser.shutter,
        cash_message=cash_message,
        receipts_waiting=receipts_waiting,
        wallet=tuple(WalletEntry(k, c.label) for k, c in atm.wallet.items()),
        pressed=pressed,
        blink=blinks(reader.entry_enabled, reader.state.value, bool(notes)) and blink_phase,
        in_service=atm.controller.state != "out_of_service",
    )


def currency(atm: SimulatedAtm) -> str:
    return str(atm.controller.config.currency_symbol)


def header_status(in_service: bool) -> str:
    return "24 HOUR BANKING" if in_service else "OUT OF SERVICE"


def card_slot_status(card_media: str, entry_enabled: bool) -> str:
    """The text under the card slot; "" while the card itself shows at the gate."""
    return {
        "none": "Insert card" if entry_enabled else "",
        "inside": "Card inside",
        "gate": "",
        "jammed": "CARD JAMMED",
    }.get(card_media, card_media)


def card_light(state: FasciaState) -> Literal["red", "green", "off"]:
    if state.card_media == "jammed":
        return "red"
    lit = state.entry_enabled and state.card_media == "none" and state.blink
    return "green" if lit else "off"


def cash_light(state: FasciaState) -> bool:
    return any(p.count for p in state.notes) and state.blink


def cash_slot_text(state: FasciaState) -> str:
    """The text on the closed shutter: a jam outranks the last cash message."""
    return "SHUTTER JAMMED" if state.shutter == "jammed" else state.cash_message


def note_caption(pile: NotePile, currency: str) -> str:
    return f"{pile.count} x {money_text(pile.denomination, currency)}"


def wallet_button_text(index: int, entry: WalletEntry) -> str:
    # Numbered from 1 to match the Ctrl+1..9 shortcuts.
    return f"{index + 1} {entry.label or entry.card_id}"


# ----- the operator panel --------------------------------------------------------------------


def journal_lines(entries: Iterable[JournalEntry]) -> tuple[str, ...]:
    """Journal entries as panel lines, any card number in them masked: the panel faces the room."""
    lines = []
    for entry in entries:
        details = " ".join(f"{k}={v}" for k, v in sorted(entry.fields.items()))
        text = f"{entry.seq} {entry.at[11:19]} {entry.event} {details}"
        lines.append(PAN_LIKE.sub(lambda m: mask_pan(m.group(0)), text))
    return tuple(lines)


def host_control(host_running: bool | None) -> str:
    """`host_running` is None when the bank host is not run by the kiosk."""
    if host_running is None:
        return "unavailable"
    return "running" if host_running else "stopped"


def armed_keys(armed: Iterable[Any]) -> frozenset[str]:
    return frozenset(f"{a.target}:{a.fault}" for a in armed)


def status_lines(
    atm: SimulatedAtm,
    cash: Mapping[str, Any],
    host_running: bool | None,
    recovery_report: Sequence[str],
) -> tuple[StatusLine, ...]:
    """The status tab's lines; `cash` is the dispenser's status, read once for the whole panel."""
    bay = atm.bay
    controller = atm.controller
    lines: list[StatusLine] = []
    add = lines.append
    add(("title", f"ATM {atm.terminal_id}: {controller.state}"))
    add(("text", f"screen: {controller.screen.name}"))
    if controller.out_of_service_reason and controller.state == "out_of_service":
        add(("warn", f"out of service: {controller.out_of_service_reason}"))
    add(
        (
            "text",
            f"cash {'available' if controller.cash_available else 'NOT available'}, "
            f"receipts {'available' if controller.receipts_available else 'NOT available'}",
        )
    )
    address = atm.host_address
    connected = getattr(controller.host, "connected", None)
    link = "connected" if connected else "not connected" if connected is not None else "?"
    server = "" if host_running is None else "; bank host " + ("up" if host_running else "DOWN")
    add(("title", f"Host link {address.host}:{address.port}: {link}{server}"))
    add(("text", f"advices waiting: {len(controller.advices.pending())}"))
    reader = bay.card_reader.status()
    add(("title", "Card reader"))
    add(
        (
            "text",
            f"  media {reader['media']}, entry {'on' if reader['entry_enabled'] else 'off'}"
            f", {'powered' if reader['powered'] else 'POWER DOWN'}",
        )
    )
    add(
        (
            "text",
            f"  retain bin {reader['retained']}/{reader['retain_capacity']}, "
            f"commands {reader['commands']}",
        )
    )
    pad = bay.pin_pad.status()
    add(("title", "PIN pad"))
    add(
        (
            "text",
            f"  mode {pad['mode']}, keys {'loaded' if pad['keys_loaded'] else 'MISSING'}"
            f"{', TAMPERED' if pad['tampered'] else ''}, format {pad['pin_block_format']}",
        )
    )
    add(("title", f"Cash dispenser (shutter {cash['shutter']})"))
    for c in cash["cassettes"]:
        add(
            (
                "text",
                f"  cassette {c['number']}: {c['count']} x "
                f"{money_text(c['denomination'], currency(atm))} ({c['state']})",
            )
        )
    add(
        (
            "text",
            f"  reject bin {cash['reject_bin']}, retract bin {cash['retract_bin']}, "
            f"presented {cash['presented']}, stacker {cash['stacker']}",
        )
    )
    counters = cash["counters"]
    add(("dim", "  " + ", ".join(f"{k} {v}" for k, v in counters.items())))
    printer = bay.receipt_printer.status()
    add(("title", "Receipt printer"))
    add(
        (
            "text",
            f"  paper {printer['paper']} ({printer['remaining_lines']} lines left), "
            f"{'online' if printer['online'] else 'OFFLINE'}, receipts {printer['receipts']}",
        )
    )
    armed = bay.armed()
    add(("title", f"Armed faults: {len(armed)}"))
    for fault in armed[:6]:
        add(("warn", f"  {fault}"))
    if recovery_report:
        add(("title", "Power-failure recovery"))
        for line in recovery_report[:4]:
            add(("text", f"  {line}"))
    return tuple(lines)


def panel_state(
    atm: SimulatedAtm,
    *,
    tab: str,
    fault_mode: str,
    host_running: bool | None,
    message: str,
    journal: tuple[str, ...],
    recovery_report: Sequence[str],
) -> PanelState:
    bay = atm.bay
    controller = atm.controller
    symbol = currency(atm)
    cash = bay.cash_dispenser.status()
    return PanelState(
        tab=tab,
        status_lines=status_lines(atm, cash, host_running, recovery_report),
        catalogue=tuple((t, tuple(bay.faults.known(t))) for t in bay.faults.targets()),
        armed=armed_keys(bay.armed()),
        host_control=host_control(host_running),
        supervisor=controller.state == "supervisor",
        can_service=controller.state in SERVICE_STATES,
        message=message,
        fault_mode=fault_mode,
        cassettes=tuple(
            CassetteRow(
                c["number"],
                f"{c['number']}: {money_text(c['denomination'], symbol)}",
                c["count"],
                c["capacity"],
            )
            for c in cash["cassettes"]
        ),
        journal=journal,
    )


def host_button_text(host_control: str) -> str:
    return {"running": "Host: take down", "stopped": "Host: bring up"}.get(
        host_control, "Host: not ours"
    )


def supervisor_buttons(state: PanelState) -> tuple[tuple[str, str, bool], ...]:
    """The supervisor tab's buttons as (text, operator command, enabled)."""
    mode = "Leave supervisor mode" if state.supervisor else "Enter supervisor mode"
    return (
        (mode, "supervisor", True),
        ("Replenish: fill cassettes, empty bins", "replenish", state.can_service),
        ("Empty the card retain bin", "empty_retain_bin", state.can_service),
        ("Purge loose notes to the reject bin", "purge", state.supervisor),
        ("Remove a card stuck in the reader", "remove_card", state.supervisor),
        ("Load a new paper roll", "load_paper", state.can_service),
        ("Clear every device and link fault", "clear_faults", True),
    )
