"""The ATM application: states and transitions as data, device I/O in the state callbacks.

`step()` polls the devices once and fires at most a few events; a runner calls it in a loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transitions import Machine, MachineError

from config.card_numbers import mask_pan
from device.advice_queue import AdviceQueue
from device.clock import Clock
from device.controller.controller_events import ControllerEvent
from device.controller.device_status import CardMedia, CassetteState, PaperLevel
from device.controller.ports import (
    CardData,
    CardReaderPort,
    CashDispenserPort,
    DriverError,
    HostPort,
    HostReply,
    HostUnavailable,
    PinBlock,
    PinPadPort,
    ReceiptPrinterPort,
)
from device.controller.settlement import Settlement
from device.journal import Journal, JournalWriteError, NewEntry
from device.journal_events import JournalEvent
from device.screens import RenderedScreen, ScreenSet

log = logging.getLogger(__name__)


class SupervisorError(RuntimeError):
    """An operator action that the ATM's current mode does not allow."""


CUSTOMER_INPUT_STATES = (
    "pin_entry",
    "transaction_menu",
    "account_selection",
    "amount_entry",
    "new_pin_entry",
    "showing_result",
)

STATES = [
    "starting",
    "out_of_service",
    "supervisor",
    "idle",
    "reading_card",
    "pin_entry",
    "verifying_pin",
    "transaction_menu",
    "account_selection",
    "amount_entry",
    "new_pin_entry",
    "authorising",
    "showing_result",
    "dispensing",
    "ejecting_card",
    "presenting_cash",
    "printing",
    "capturing_card",
    "closing",
]

TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": ControllerEvent.READY, "source": "starting", "dest": "idle"},
    {
        "trigger": ControllerEvent.FAIL,
        "source": ["starting", "idle", "out_of_service"],
        "dest": "out_of_service",
    },
    {"trigger": ControllerEvent.RECOVER, "source": "out_of_service", "dest": "idle"},
    {
        "trigger": ControllerEvent.ENTER_SUPERVISOR,
        "source": ["idle", "out_of_service"],
        "dest": "supervisor",
    },
    {"trigger": ControllerEvent.LEAVE_SUPERVISOR, "source": "supervisor", "dest": "starting"},
    {"trigger": ControllerEvent.CARD_INSERTED, "source": "idle", "dest": "reading_card"},
    {"trigger": ControllerEvent.CARD_READ, "source": "reading_card", "dest": "pin_entry"},
    {"trigger": ControllerEvent.PIN_ENTERED, "source": "pin_entry", "dest": "verifying_pin"},
    {"trigger": ControllerEvent.PIN_RETRY, "source": "verifying_pin", "dest": "pin_entry"},
    {"trigger": ControllerEvent.PIN_OK, "source": "verifying_pin", "dest": "transaction_menu"},
    {
        "trigger": ControllerEvent.RETAIN_CARD,
        "source": ["verifying_pin", "ejecting_card"],
        "dest": "capturing_card",
    },
    {
        "trigger": ControllerEvent.CHOOSE_ACCOUNT,
        "source": "transaction_menu",
        "dest": "account_selection",
    },
    {
        "trigger": ControllerEvent.CHOOSE_NEW_PIN,
        "source": "transaction_menu",
        "dest": "new_pin_entry",
    },
    {"trigger": ControllerEvent.ASK_AMOUNT, "source": "account_selection", "dest": "amount_entry"},
    {
        "trigger": ControllerEvent.AUTHORISE,
        "source": ["account_selection", "amount_entry", "new_pin_entry"],
        "dest": "authorising",
    },
    {"trigger": ControllerEvent.DISPENSE, "source": "authorising", "dest": "dispensing"},
    {
        "trigger": ControllerEvent.SHOW_RESULT,
        "source": ["authorising", "dispensing"],
        "dest": "showing_result",
    },
    {"trigger": ControllerEvent.ANOTHER, "source": "showing_result", "dest": "transaction_menu"},
    {"trigger": ControllerEvent.CASH_STAGED, "source": "dispensing", "dest": "ejecting_card"},
    {"trigger": ControllerEvent.PRESENT_CASH, "source": "ejecting_card", "dest": "presenting_cash"},
    {
        "trigger": ControllerEvent.PRINT_RECEIPT,
        "source": ["ejecting_card", "presenting_cash"],
        "dest": "printing",
    },
    {
        "trigger": ControllerEvent.CLOSE,
        "source": ["ejecting_card", "printing", "capturing_card"],
        "dest": "closing",
    },
    {"trigger": ControllerEvent.DONE, "source": "closing", "dest": "idle"},
    {
        "trigger": ControllerEvent.END_SESSION,
        "source": [*CUSTOMER_INPUT_STATES, "reading_card", "verifying_pin", "authorising"],
        "dest": "ejecting_card",
    },
]

CASH_TAKE_SECONDS = 30.0
CARD_TAKE_SECONDS = 30.0
MORE_TIME_SECONDS = 30.0
HEALTH_CHECK_SECONDS = 5.0
FAST_CASH = (2000, 5000, 10000, 20000)


@dataclass(frozen=True)
class ControllerConfig:
    terminal_id: str
    session_timeout_seconds: float = 120.0
    cash_take_seconds: float = CASH_TAKE_SECONDS
    card_take_seconds: float = CARD_TAKE_SECONDS
    pin_block_format: int = 0
    capture_on_pin_lockout: bool = True
    currency_symbol: str = "EUR"


@dataclass
class Session:
    card: CardData
    pin: PinBlock | None = None
    transaction: str = ""
    account: str = "checking"
    amount: int = 0
    typed: str = ""
    new_pin: PinBlock | None = None
    pin_attempts: int = 0
    withdrawal: HostReply | None = None
    staged_amount: int = 0
    receipt: list[str] = field(default_factory=list)
    want_receipt: bool = True


def money(cents: int, symbol: str = "EUR") -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{symbol} {abs(cents) // 100:,}.{abs(cents) % 100:02d}"


class AtmController:
    """One ATM. Its `state` attribute is kept by the transitions Machine."""

    state: str

    def __init__(
        self,
        *,
        card_reader: CardReaderPort,
        pin_pad: PinPadPort,
        dispenser: CashDispenserPort,
        printer: ReceiptPrinterPort,
        host: HostPort,
        journal: Journal,
        advices: AdviceQueue,
        screens: ScreenSet,
        clock: Clock,
        config: ControllerConfig,
        plan_notes: Callable[[int, Any], dict[int, int] | None],
    ) -> None:
        self.card_reader = card_reader
        self.pin_pad = pin_pad
        self.dispenser = dispenser
        self.printer = printer
        self.host = host
        self.journal = journal
        self.advices = advices
        self.screens = screens
        self.clock = clock
        self.config = config
        self.plan_notes = plan_notes
        self.session: Session | None = None
        self.screen: RenderedScreen = screens.render("starting")
        self.screen_listeners: list[Callable[[RenderedScreen], None]] = []
        self.cash_available = True
        self.receipts_available = True
        self.out_of_service_reason = ""
        self.operator_hold = False
        self._health_check_due = False
        self._deadline: float | None = None
        self._on_deadline: Callable[[], object] | None = None
        self._last_input = 0.0
        self._asking_more_time = False
        self._next_health_check = 0.0
        self.settlement = Settlement(journal, advices, dispenser, host)
        self.card_stuck = False  # a card neither returned nor retained: the operator removes it
        self.write_failure = ""  # the journal or advice queue could not be written
        self.recovery_report: list[str] = []
        self._eject_screen = "ejecting_card"
        self._closing_with: list[NewEntry] = []  # written with session_closed
        self._other_amount = False
        self._result_screen: tuple[str, dict[str, str]] = ("result", {})
        self._screen_before_more_time = self.screen
        self.machine = Machine(
            model=self,
            states=STATES,
            transitions=TRANSITIONS,
            initial="starting",
            queued=True,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            after_state_change="_announce_state",
        )
        # The events each state accepts: the transitions are fixed once the machine is built,
        # and asking the machine scans every event of it, at every fire.
        self._accepted = {
            state: frozenset(self.machine.get_triggers(state)) for state in self.machine.states
        }

    # ----- plumbing -------------------------------------------------------------------------

    def fire(self, event: ControllerEvent) -> bool:
        """Fire an event if the current state accepts it; a stray one is logged and ignored,
        a name that is no event of the machine at all is a bug and raises ValueError."""
        if event not in self.machine.events:
            raise ValueError(f"{event!r} is not an event of the ATM controller")
        if event not in self._accepted[self.state]:
            log.info("ignored event %r in state %s", event, self.state)
            return False
        try:
            trigger: Callable[[], bool] = getattr(self, event)
            trigger()
        except MachineError as err:
            log.info("ignored event %r in state %s: %s", event, self.state, err)
            return False
        return True

    def show(self, name: str, **values: Any) -> None:
        self.screen = self.screens.render(name, **values)
        for listener in self.screen_listeners:
            listener(self.screen)

    def _announce_state(self) -> None:
        log.debug("state %s", self.state)

    def _set_deadline(self, seconds: float, action: Callable[[], object]) -> None:
        self._deadline = self.clock.monotonic() + seconds
        self._on_deadline = action

    @property
    def next_deadline(self) -> float | None:
        """When (on the clock's monotonic scale) the controller will act by itself next:
        a timer of the current step, or the next health check between customers."""
        if self.state in ("idle", "out_of_service"):
            return self._next_health_check
        return self._deadline

    def _clear_deadline(self) -> None:
        self._deadline = None
        self._on_deadline = None

    def _touch(self) -> None:
        self._last_input = self.clock.monotonic()
        if self._asking_more_time:
            self._asking_more_time = False

    # ----- the loop -------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Settle what a power failure left open, self-test every device and sign on.

        Returns what recovery did, one line per withdrawal it settled.
        """
        try:
            self.recovery_report = self.settlement.recover()
            for line in self.recovery_report:
                log.warning("recovery: %s", line)
            self._put_away_leftovers()
            self.on_enter_starting()
        except JournalWriteError as err:
            self._halt(err)
        return self.recovery_report

    def _put_away_leftovers(self) -> None:
        """After a power cut: notes cut short in the transport or stacker go to reject, and a
        card found inside belongs to nobody now: it is retained, never used for a new session."""
        with contextlib.suppress(DriverError):
            self.settlement.put_away_loose_notes()
        try:
            media = self.card_reader.status().media
        except DriverError:
            return
        if media != CardMedia.NONE:
            self.journal.record(JournalEvent.CARD_FOUND_AT_START, media=media)
            self._retain_or_hold_card(media)

    def _retain_or_hold_card(self, media: CardMedia) -> None:
        try:
            if media == CardMedia.JAMMED:
                raise DriverError("the card is jammed in the reader")
            self.card_reader.capture()
            self.journal.record(JournalEvent.CARD_CAPTURED, reason="left in the reader")
        except DriverError as err:
            self.card_stuck = True
            self.journal.record(JournalEvent.CARD_STUCK, error=str(err))

    def step(self) -> None:
        """Poll the devices once, act on what they report, and run due timers."""
        now = self.clock.monotonic()
        action: Callable[[], object] | None = getattr(self, f"_poll_{self.state}", None)
        if self._deadline is not None and now >= self._deadline:
            action = self._on_deadline
            self._clear_deadline()
        if action is None:
            return
        try:
            action()
        except DriverError as err:
            self._device_failure(err)
        except HostUnavailable as err:
            log.warning("host unavailable: %s", err)
        except JournalWriteError as err:
            self._halt(err)

    def _halt(self, err: OSError) -> None:
        """A journal or advice write failed: stop at once, out of service, nothing more done.

        The file's tail is unknown, so nothing is journalled; recovery at the next start settles
        from what did reach the disk and from the dispenser's own report."""
        log.error("out of service: %s", err)
        self.write_failure = f"journal cannot be written: {err}"
        self.out_of_service_reason = self.write_failure
        self._clear_deadline()
        if self.state != "out_of_service":
            self.machine.set_state("out_of_service")
        if self.session is not None:
            with contextlib.suppress(DriverError):
                self.card_reader.eject()  # the card moves no money: give it back if it can
        self.session = None
        with contextlib.suppress(DriverError):
            self.card_reader.disable_entry()
        self.show("out_of_service", reason=self.out_of_service_reason)
        self._next_health_check = self.clock.monotonic() + HEALTH_CHECK_SECONDS

    def _device_failure(self, err: DriverError) -> None:
        log.warning("device failure in %s: %s", self.state, err)
        self.journal.record(JournalEvent.DEVICE_FAILURE, state=self.state, error=str(err))
        if self.state in ("idle", "starting"):
            self._go_out_of_service(str(err))
        elif self.session is not None and self.state in CUSTOMER_INPUT_STATES:
            self.fire(ControllerEvent.END_SESSION)

    # ----- start-up and health --------------------------------------------------------------

    def on_enter_starting(self) -> None:
        self.show("starting")
        problem = self._health_problem(sign_on=True)
        if self.operator_hold and not problem:
            problem = "taken out of service by the operator"
        self._settle_advices()
        if problem:
            self._go_out_of_service(problem)
        else:
            self.fire(ControllerEvent.READY)

    def _health_problem(self, *, sign_on: bool = False) -> str:
        """Why the ATM cannot serve customers now; "" if it can. Also sets degraded modes."""
        if self.write_failure:
            return self.write_failure  # until a restart reopens the journal
        try:
            reader = self.card_reader.status()
            if not getattr(reader, "initialised", True):
                # After a power loss the reader forgets its set-up: initialise it again.
                self.card_reader.initialise()
                self.journal.record(JournalEvent.CARD_READER_INITIALISED)
                reader = self.card_reader.status()
            if reader.media == CardMedia.JAMMED:
                return "card reader jammed"
        except DriverError as err:
            return f"card reader: {err}"
        if self.card_stuck:
            if reader.media != CardMedia.NONE:
                return "a card is left in the reader: remove it in supervisor mode"
            self.card_stuck = False  # the operator cleared the reader (or the card was pulled)
            self.journal.record(JournalEvent.CARD_GONE)
        try:
            pad = self.pin_pad.status()
            if getattr(pad, "tampered", False) or not getattr(pad, "keys_loaded", True):
                return "PIN pad has no keys"
        except DriverError as err:
            return f"PIN pad: {err}"
        try:
            if sign_on:
                self.host.sign_on()
            else:
                self.host.echo()
        except HostUnavailable as err:
            return f"host unreachable: {err}"
        self.cash_available = self._dispenser_can_pay()
        self.receipts_available = self._printer_ready()
        return ""

    def _dispenser_can_pay(self) -> bool:
        if self.settlement.deferred:
            return False  # the notes of a withdrawal still unsettled may lie at the shutter
        try:
            status = self.dispenser.status()
        except DriverError:
            return False
        empty = (CassetteState.EMPTY, CassetteState.MISSING)
        usable = [c for c in status.cassettes if c.state not in empty and c.count]
        return bool(status.device_ok and usable)

    def _printer_ready(self) -> bool:
        try:
            status = self.printer.status()
        except DriverError:
            return False
        return bool(status.online) and status.paper in (PaperLevel.ADEQUATE, PaperLevel.NEAR_END)

    # ----- operator ---------------------------------------------------------------------------

    def set_out_of_service(
        self, held: bool, reason: str = "taken out of service by the operator"
    ) -> bool:
        """The operator's switch. Held out of service, the ATM does not come back by itself."""
        self.operator_hold = held
        self.journal.record(JournalEvent.OPERATOR_SERVICE, held=held)
        if held and self.state == "idle":
            self._go_out_of_service(reason)
            return True
        if not held and self.state == "out_of_service":
            self._next_health_check = self.clock.monotonic()
            return True
        return held and self.state == "out_of_service"

    def open_supervisor(self) -> bool:
        """Supervisor mode (only between customers): replenishment and fault clearing."""
        return self.fire(ControllerEvent.ENTER_SUPERVISOR)

    def replenish(self, counts: dict[int, int]) -> None:
        """Set each cassette's note count (an exchange), from supervisor mode only."""
        if self.state != "supervisor":
            raise SupervisorError("replenishment needs supervisor mode")
        self.dispenser.replenish(counts)
        self.journal.record(JournalEvent.REPLENISHED, counts={str(k): v for k, v in counts.items()})
        self.show("supervisor", message="Cassettes replenished")

    def purge_dispenser(self) -> int:
        """Put every loose note (transport and stacker) into the reject bin, from supervisor mode
        only; returns the notes moved. Clears a pick cut short by a power cut or a jam."""
        if self.state != "supervisor":
            raise SupervisorError("a purge needs supervisor mode")
        moved = self.dispenser.purge()
        self.journal.record(JournalEvent.PURGED, notes=moved, reason="operator")
        self.show("supervisor", message=f"{moved} notes purged to the reject bin")
        return moved

    def card_removed(self) -> None:
        """The operator took out a card the reader could neither return nor retain."""
        if self.state != "supervisor":
            raise SupervisorError("removing a card needs supervisor mode")
        self.card_stuck = False
        self.journal.record(JournalEvent.CARD_REMOVED_BY_OPERATOR)
        self.show("supervisor", message="Card removed")

    def close_supervisor(self) -> bool:
        """Back to service: the ATM runs its self-test again (devices may have been cleared)."""
        return self.fire(ControllerEvent.LEAVE_SUPERVISOR)

    def on_enter_supervisor(self) -> None:
        self._clear_deadline()
        with contextlib.suppress(DriverError):
            self.card_reader.disable_entry()
        self.journal.record(JournalEvent.SUPERVISOR_ENTERED)
        self.show("supervisor", message="")

    def on_exit_supervisor(self) -> None:
        self.journal.record(JournalEvent.SUPERVISOR_LEFT)

    def _go_out_of_service(self, reason: str) -> None:
        self.out_of_service_reason = reason
        self.journal.record(JournalEvent.OUT_OF_SERVICE, reason=reason)
        self.fire(ControllerEvent.FAIL)

    def on_enter_out_of_service(self) -> None:
        self.show("out_of_service", reason=self.out_of_service_reason)
        self._next_health_check = self.clock.monotonic() + HEALTH_CHECK_SECONDS

    def _poll_out_of_service(self) -> None:
        if self.clock.monotonic() < self._next_health_check:
            return
        self._next_health_check = self.clock.monotonic() + HEALTH_CHECK_SECONDS
        problem = self._health_problem(sign_on=True)
        if self.operator_hold:
            problem = "taken out of service by the operator"
        if problem:
            if problem != self.out_of_service_reason:
                self.out_of_service_reason = problem
                self.show("out_of_service", reason=problem)
            return
        self.journal.record(JournalEvent.IN_SERVICE)
        self.fire(ControllerEvent.RECOVER)

    def _settle_deferred(self) -> None:
        if self.settlement.deferred:
            self.settlement.settle_deferred()
            self.cash_available = self._dispenser_can_pay()

    def _settle_advices(self) -> None:
        self.settlement.forward()

    def _queue_advice(self, kind: str, reply: HostReply, amount: int, handed_out: int) -> None:
        self.settlement.queue(
            kind, reply.stan, reply.transmitted_at, amount, handed_out, self.state
        )

    # ----- idle -----------------------------------------------------------------------------

    def on_enter_idle(self) -> None:
        self.session = None
        self._clear_deadline()
        # Before the next customer, not only at the health check: a busy ATM may never be idle
        # long enough for one, and would hold the unsettled withdrawal for good.
        self._settle_deferred()
        if self.card_stuck:
            self._go_out_of_service(self._health_problem())
            return
        self._show_idle()
        try:
            self.card_reader.enable_entry()
        except DriverError as err:
            self._go_out_of_service(self._health_problem() or str(err))
            return
        delay = 0.0 if self._health_check_due else HEALTH_CHECK_SECONDS
        self._health_check_due = False
        self._next_health_check = self.clock.monotonic() + delay

    def _show_idle(self) -> None:
        notices = [] if self.cash_available else ["Cash is not available"]
        if not self.receipts_available:
            notices.append("No receipts")
        self.show("idle", notice="; ".join(notices))

    def _poll_idle(self) -> None:
        if self.card_reader.status().media == CardMedia.INSIDE:
            self.fire(ControllerEvent.CARD_INSERTED)
            return
        if self.clock.monotonic() >= self._next_health_check:
            self._next_health_check = self.clock.monotonic() + HEALTH_CHECK_SECONDS
            self._settle_deferred()
            self._settle_advices()
            shown = (self.cash_available, self.receipts_available)
            problem = self._health_problem()
            if problem:
                self._go_out_of_service(problem)
            elif shown != (self.cash_available, self.receipts_available):
                self._show_idle()

    # ----- card and PIN ---------------------------------------------------------------------

    def on_enter_reading_card(self) -> None:
        self.show("reading_card")
        try:
            tracks = self.card_reader.read_tracks()
        except DriverError as err:
            self.journal.record(JournalEvent.CARD_UNREADABLE, error=str(err))
            self.session = Session(card=CardData(pan="", expiry=""))
            self._eject_with("card_unreadable")
            return
        card = CardData(pan=tracks.pan, expiry=tracks.expiry, service_code=tracks.service_code)
        self.session = Session(card=card)
        self.journal.record(JournalEvent.CARD_READ, pan=card.pan)
        self._touch()
        self.fire(ControllerEvent.CARD_READ)

    def _eject_with(self, screen: str) -> None:
        self._eject_screen = screen
        self.fire(ControllerEvent.END_SESSION)

    def on_enter_pin_entry(self) -> None:
        assert self.session is not None
        self.session.typed = ""
        self.pin_pad.start_pin_entry(
            self.session.card.pan,
            pin_block_format=self.config.pin_block_format,
            timeout_seconds=int(self.config.session_timeout_seconds),
        )
        message = "Incorrect PIN, please try again" if self.session.pin_attempts else ""
        self.show("pin_entry", masked_pin="", message=message)
        self._touch()

    def _poll_pin_entry(self) -> None:
        assert self.session is not None
        for event in self.pin_pad.poll_events():
            self._touch()
            if event.kind == "digit":
                self.session.typed += "*"
            elif event.kind in ("clear", "backspace"):
                self.session.typed = "" if event.kind == "clear" else self.session.typed[:-1]
            elif event.kind == "cancel" or (event.kind == "function" and event.value == "F8"):
                self.pin_pad.cancel()
                self.fire(ControllerEvent.END_SESSION)
                return
            elif event.kind in ("timeout", "tamper"):
                self._end_on_pad_event(event.kind)
                return
            elif event.kind == "enter":
                block = self.pin_pad.get_pin_block()
                self.session.pin = PinBlock(block.block, block.format, block.ksn)
                self.fire(ControllerEvent.PIN_ENTERED)
                return
            self.show("pin_entry", masked_pin=self.session.typed)
        self._check_inactivity()

    def on_enter_verifying_pin(self) -> None:
        assert self.session is not None and self.session.pin is not None
        self.show("verifying_pin")
        try:
            reply = self.host.verify_pin(self.session.card, self.session.pin)
        except HostUnavailable as err:
            self.journal.record(JournalEvent.HOST_UNAVAILABLE, step="verify_pin", error=str(err))
            self._eject_with("closing")
            return
        self.journal.record(
            JournalEvent.PIN_VERIFIED, pan=self.session.card.pan, code=reply.response_code
        )
        if reply.approved:
            self.fire(ControllerEvent.PIN_OK)
        elif reply.response_code == "55":
            self.session.pin_attempts += 1
            self.session.pin = None
            self.fire(ControllerEvent.PIN_RETRY)
        elif reply.response_code == "75" and self.config.capture_on_pin_lockout:
            self.fire(ControllerEvent.RETAIN_CARD)
        else:
            self._decline(reply.response_code)

    # ----- menus ----------------------------------------------------------------------------

    def on_enter_transaction_menu(self) -> None:
        self.pin_pad.start_plain_entry()
        self.receipts_available = self._printer_ready()
        notices = []
        if not self.cash_available:
            notices.append("Cash withdrawals are not available")
        if not self.receipts_available:
            notices.append("No receipts")
        self.show("transaction_menu", notice="; ".join(notices))
        self._touch()

    def _end_on_pad_event(self, kind: str) -> None:
        """A PIN pad timeout or tamper ends the session; a tamper also checks health at once."""
        self.journal.record(JournalEvent(f"pin_pad_{kind}"), state=self.state)
        if kind == "tamper":
            self._health_check_due = True
        self.fire(ControllerEvent.END_SESSION)

    def _function_event(self) -> str | None:
        """The screen event of the next function key or cancel pressed, or None."""
        for event in self.pin_pad.poll_events():
            on_more_time = self.screen.name == "more_time"
            self._touch()
            if event.kind == "tamper":
                self._end_on_pad_event("tamper")
                return None
            if event.kind == "cancel":
                return "cancel"
            if event.kind == "function":
                key = self.screen.keys.get(event.value)
                if key is None:
                    log.info("ignored function key %s on screen %s", event.value, self.screen.name)
                    continue
                return key.event
            if event.kind == "enter" and on_more_time:
                return "confirm"
            log.info("ignored key %s on screen %s", event.kind, self.screen.name)
        return None

    def _menu_event(self) -> str | None:
        """The next event of a menu screen, once inactivity and "more time?" are dealt with."""
        event = self._function_event()
        if event is None:
            self._check_inactivity()
            return None
        if self._answer_more_time(event):
            return None
        return event

    def _poll_transaction_menu(self) -> None:
        assert self.session is not None
        event = self._menu_event()
        if event is None:
            return
        if self.screen.name == "receipt_unavailable":
            if event == "confirm":
                self.session.want_receipt = False
                self._begin(self.session.transaction)
            else:
                self.fire(ControllerEvent.END_SESSION)
            return
        if event == "cancel":
            self.fire(ControllerEvent.END_SESSION)
            return
        transaction = {
            "choose_withdrawal": "withdrawal",
            "choose_balance": "balance",
            "choose_transfer": "transfer",
            "choose_statement": "statement",
            "choose_pin_change": "pin_change",
        }.get(event)
        if transaction is None:
            return
        if transaction == "withdrawal" and not self.cash_available:
            self.show("transaction_menu", notice="Cash withdrawals are not available")
            return
        self.session.transaction = transaction
        if not self.receipts_available and self.session.want_receipt:
            self.show("receipt_unavailable")  # the customer decides before anything happens
            return
        self._begin(transaction)

    def _begin(self, transaction: str) -> None:
        assert self.session is not None
        self.session.transaction = transaction
        self.fire(
            ControllerEvent.CHOOSE_NEW_PIN
            if transaction == "pin_change"
            else ControllerEvent.CHOOSE_ACCOUNT
        )

    def on_enter_account_selection(self) -> None:
        assert self.session is not None
        prompts = {
            "transfer": "Transfer from which account?",
            "withdrawal": "Withdraw from which account?",
        }
        self.show(
            "account_selection", prompt=prompts.get(self.session.transaction, "Which account?")
        )

    def _poll_account_selection(self) -> None:
        assert self.session is not None
        event = self._menu_event()
        if event is None:
            return
        if event == "cancel":
            self.fire(ControllerEvent.END_SESSION)
        elif event in ("choose_checking", "choose_savings"):
            self.session.account = event.removeprefix("choose_")
            if self.session.transaction in ("withdrawal", "transfer"):
                self.fire(ControllerEvent.ASK_AMOUNT)
            else:
                self.fire(ControllerEvent.AUTHORISE)

    def on_enter_amount_entry(self) -> None:
        assert self.session is not None
        self.session.typed = ""
        self._other_amount = False
        self.show("amount_entry", message="")

    def _poll_amount_entry(self) -> None:
        assert self.session is not None
        for event in self.pin_pad.poll_events():
            self._touch()
            if self._other_amount and event.kind == "digit":
                if len(self.session.typed) < 6:
                    self.session.typed += event.value
                self._show_typed_amount("")
                continue
            if self._other_amount and event.kind in ("clear", "backspace"):
                typed = self.session.typed
                self.session.typed = "" if event.kind == "clear" else typed[:-1]
                self._show_typed_amount("")
                continue
            if self._other_amount and event.kind == "enter":
                self._choose_amount(int(self.session.typed or "0") * 100)
                return
            if event.kind == "cancel":
                self.fire(ControllerEvent.END_SESSION)
                return
            if event.kind != "function":
                continue
            key = self.screen.keys.get(event.value)
            if key is None:
                continue
            if key.event == "cancel":
                self.fire(ControllerEvent.END_SESSION)
                return
            if key.event == "other_amount":
                self._other_amount = True
                self._show_typed_amount("")
            elif key.event.startswith("fast_cash_"):
                self._choose_amount(FAST_CASH[int(key.event.rsplit("_", 1)[1]) - 1])
                return
        self._check_inactivity()

    def _show_typed_amount(self, message: str) -> None:
        assert self.session is not None
        typed = int(self.session.typed or "0") * 100
        self.show("other_amount", amount=money(typed, self.config.currency_symbol), message=message)

    def _choose_amount(self, amount: int) -> None:
        assert self.session is not None
        if amount <= 0:
            self._show_typed_amount("Please enter an amount")
            return
        if self.session.transaction == "withdrawal":
            try:
                plan = self.plan_notes(amount, self.dispenser.status().cassettes)
            except DriverError:
                plan = None
            if plan is None:
                self.session.typed = ""
                self._other_amount = False
                self.show("amount_entry", message=f"{money(amount)} cannot be dispensed here")
                return
        self.session.amount = amount
        self.fire(ControllerEvent.AUTHORISE)

    def on_enter_new_pin_entry(self) -> None:
        assert self.session is not None
        self.session.new_pin = None
        self.pin_pad.start_pin_entry(
            self.session.card.pan,
            pin_block_format=self.config.pin_block_format,
            timeout_seconds=int(self.config.session_timeout_seconds),
        )
        self.session.typed = ""
        self.show("new_pin_entry", prompt="Enter your new PIN", masked_pin="")

    def _poll_new_pin_entry(self) -> None:
        assert self.session is not None
        for event in self.pin_pad.poll_events():
            self._touch()
            if event.kind == "digit":
                self.session.typed += "*"
                self.show(
                    "new_pin_entry", prompt="Enter your new PIN", masked_pin=self.session.typed
                )
            elif event.kind in ("cancel", "timeout", "tamper"):
                self._end_on_pad_event(event.kind)
                return
            elif event.kind == "enter":
                block = self.pin_pad.get_pin_block()
                self.session.new_pin = PinBlock(block.block, block.format, block.ksn)
                self.fire(ControllerEvent.AUTHORISE)
                return
        self._check_inactivity()

    # ----- inactivity -----------------------------------------------------------------------

    def _check_inactivity(self) -> None:
        idle_for = self.clock.monotonic() - self._last_input
        if not self._asking_more_time and idle_for >= self.config.session_timeout_seconds:
            self._asking_more_time = True
            self._screen_before_more_time = self.screen
            self.show("more_time")
            self.journal.record(JournalEvent.INACTIVITY, state=self.state)
        elif self._asking_more_time and idle_for >= (
            self.config.session_timeout_seconds + MORE_TIME_SECONDS
        ):
            self._asking_more_time = False
            self.journal.record(JournalEvent.SESSION_TIMEOUT, state=self.state)
            self.fire(ControllerEvent.END_SESSION)

    def _answer_more_time(self, event: str) -> bool:
        """Handle the answer to "Do you need more time?"; True if the event was that answer."""
        if self.screen.name != "more_time":
            return False
        if event == "confirm":
            self._asking_more_time = False
            previous = self._screen_before_more_time
            self.screen = previous
            for listener in self.screen_listeners:
                listener(previous)
        else:
            self.fire(ControllerEvent.END_SESSION)
        return True

    # ----- authorisation --------------------------------------------------------------------

    def on_enter_authorising(self) -> None:
        session = self.session
        assert session is not None and session.pin is not None
        self.show("authorising")
        card, pin, kind = session.card, session.pin, session.transaction
        try:
            if kind == "withdrawal":
                reply = self.host.withdraw(
                    card, pin, session.account, session.amount, before_send=self._journal_request
                )
            elif kind == "balance":
                reply = self.host.balance(card, pin, session.account)
            elif kind == "transfer":
                other = "savings" if session.account == "checking" else "checking"
                reply = self.host.transfer(card, pin, session.account, other, session.amount)
            elif kind == "statement":
                reply = self.host.mini_statement(card, pin, session.account)
            else:
                assert session.new_pin is not None
                reply = self.host.change_pin(card, pin, session.new_pin)
        except HostUnavailable as err:
            self.journal.record(JournalEvent.HOST_UNAVAILABLE, step=kind, error=str(err))
            if kind == "withdrawal" and err.stan and err.transmitted_at:
                # The request may have been approved and its reply lost: reverse it blind. A
                # reversal of a STAN the host never saw is harmless and blocks a late original.
                lost = HostReply("", err.stan, err.transmitted_at)
                self._queue_advice("reversal", lost, session.amount, 0)
            self._eject_with("closing")
            return
        answer = (
            JournalEvent.AUTHORISATION,
            {
                "transaction": kind,
                "stan": reply.stan,
                "code": reply.response_code,
                "amount": session.amount,
                "pan": card.pan,
            },
        )
        if not reply.approved:
            self.journal.record_many([answer])
            self._decline(reply.response_code)
            return
        if kind == "withdrawal":
            session.withdrawal = reply
            # The answer and the approval recovery settles from are one step: one write, so a
            # crash leaves both lines or neither (a request never answered is reversed blind).
            approval = {
                "stan": reply.stan,
                "amount": session.amount,
                "transmitted_at": reply.transmitted_at.isoformat(),
            }
            self.journal.record_many([answer, (JournalEvent.AUTHORISED, approval)])
            self.fire(ControllerEvent.DISPENSE)
            return
        self.journal.record_many([answer])
        self._show_result(kind, reply)

    def _journal_request(self, stan: str, transmitted_at: dt.datetime) -> None:
        """The withdrawal's intent, durable before its 0200 leaves: a crash during the round trip
        leaves a STAN that recovery reverses blind (the host may have put a hold on it)."""
        assert self.session is not None
        self.journal.record(
            JournalEvent.WITHDRAWAL_REQUESTED,
            stan=stan,
            amount=self.session.amount,
            account=self.session.account,
            transmitted_at=transmitted_at.isoformat(),
            terminal=self.config.terminal_id,
        )

    def _decline(self, code: str) -> None:
        reasons = {
            "51": "Insufficient funds",
            "61": "Daily limit exceeded",
            "55": "Incorrect PIN",
            "75": "Too many incorrect PINs",
            "54": "Card expired",
            "14": "Card not recognised",
            "57": "Not permitted",
        }
        self._result_screen = ("declined", {"reason": reasons.get(code, f"Code {code}")})
        if self.state == "verifying_pin":
            self._eject_with("closing")
        else:
            self.fire(ControllerEvent.SHOW_RESULT)

    def _show_result(self, kind: str, reply: HostReply) -> None:
        assert self.session is not None
        symbol = self.config.currency_symbol
        if kind == "balance":
            body = f"Available {money(reply.available_balance or 0, symbol)}"
            self.session.receipt += [
                f"BALANCE {self.session.account.upper()}",
                f"LEDGER    {money(reply.ledger_balance or 0, symbol)}",
                f"AVAILABLE {money(reply.available_balance or 0, symbol)}",
            ]
            title = "Your balance"
        elif kind == "transfer":
            body = f"Transferred {money(self.session.amount, symbol)}"
            self.session.receipt.append(f"TRANSFER {money(self.session.amount, symbol)}")
            title = "Transfer done"
        elif kind == "statement":
            rows = [
                f"{line.posted_at.date().isoformat()} {money(line.amount, symbol)}"
                for line in reply.statement
            ]
            body = "\n".join(rows) or "No recent entries"
            self.session.receipt += ["MINI STATEMENT", *rows]
            title = "Mini statement"
        else:
            body, title = "Your PIN has been changed", "PIN changed"
            self.session.receipt.append("PIN CHANGED")
        self._result_screen = ("result", {"title": title, "body": body})
        self.fire(ControllerEvent.SHOW_RESULT)

    def on_enter_showing_result(self) -> None:
        name, values = self._result_screen
        with contextlib.suppress(DriverError):
            self.pin_pad.start_plain_entry()  # after a PIN change the pad is still in PIN entry
        self.show(name, **values)
        self._touch()
        if name == "declined":
            self._set_deadline(3.0, lambda: self.fire(ControllerEvent.END_SESSION))

    def _poll_showing_result(self) -> None:
        event = self._menu_event()
        if event is None:
            return
        if event == "confirm" and self.screen.name == "result":
            self.fire(ControllerEvent.ANOTHER)
        elif event == "cancel":
            self._clear_deadline()
            self.fire(ControllerEvent.END_SESSION)

    # ----- cash -----------------------------------------------------------------------------

    def on_enter_dispensing(self) -> None:
        session = self.session
        assert session is not None and session.withdrawal is not None
        reply = session.withdrawal
        self.show("dispensing")
        try:
            status = self.dispenser.status()
            plan = self.plan_notes(session.amount, status.cassettes)
            if plan is None:
                raise DriverError("the cassettes can no longer make up the amount")
            self.journal.record(
                JournalEvent.DISPENSE_STARTED,
                stan=reply.stan,
                amount=session.amount,
                notes={str(k): v for k, v in plan.items()},
            )
            # The STAN differs for every request, across restarts too, so the device can tell a
            # re-sent dispense (same number) from a new one.
            result = self.dispenser.dispense(plan, transaction=int(reply.stan) % 100)
            self.journal.record(
                JournalEvent.NOTES_COUNTED,
                stan=reply.stan,
                amount=result.amount,
                ok=result.ok,
                error=result.error,
            )
            if not result.ok or result.amount != session.amount:
                raise DriverError(f"dispense failed: {result.error or 'short count'}")
        except DriverError as err:
            self._abandon_cash(reply, str(err))
            self._result_screen = ("declined", {"reason": "Unable to dispense cash"})
            self.fire(ControllerEvent.SHOW_RESULT)
            return
        session.staged_amount = session.amount
        self.fire(ControllerEvent.CASH_STAGED)

    def _abandon_cash(self, reply: HostReply, reason: str) -> None:
        """Notes that will not be presented go to the reject bin; the host gets a reversal."""
        assert self.session is not None
        self.settlement.abandon_cash(
            reply.stan, reply.transmitted_at, self.session.amount, reason, self.state
        )
        self.cash_available = self._dispenser_can_pay()
        self.session.staged_amount = 0

    def on_enter_ejecting_card(self) -> None:
        self._clear_deadline()
        session = self.session
        screen = getattr(self, "_eject_screen", "ejecting_card")
        self._eject_screen = "ejecting_card"
        if session is None:
            self.fire(ControllerEvent.CLOSE)
            return
        with contextlib.suppress(DriverError):
            self.pin_pad.stop_entry()
        if screen == "ejecting_card":
            self.show(
                "ejecting_card", notice="Your cash will follow" if session.staged_amount else ""
            )
        else:
            self.show(screen, notice="")
        try:
            self.card_reader.eject()
        except DriverError as err:
            self.journal.record(JournalEvent.EJECT_FAILED, error=str(err))
            self._card_not_taken()
            return
        self.journal.record(JournalEvent.CARD_EJECTED, pan=session.card.pan)
        self._set_deadline(self.config.card_take_seconds, self._card_not_taken)

    def _poll_ejecting_card(self) -> None:
        if self.card_reader.status().media == CardMedia.NONE:
            self._clear_deadline()
            assert self.session is not None
            if self.session.staged_amount:
                self.fire(ControllerEvent.PRESENT_CASH)  # journals card_taken with its start
                return
            self.journal.record(JournalEvent.CARD_TAKEN)
            if self.session.receipt and self.session.want_receipt:
                self.fire(ControllerEvent.PRINT_RECEIPT)
            else:
                self.fire(ControllerEvent.CLOSE)

    def _card_not_taken(self) -> None:
        assert self.session is not None
        self.journal.record(JournalEvent.CARD_NOT_TAKEN)
        reply = self.session.withdrawal
        if self.session.staged_amount and reply is not None:
            self._abandon_cash(reply, "card not taken")
        self.fire(ControllerEvent.RETAIN_CARD)

    def on_enter_presenting_cash(self) -> None:
        session = self.session
        assert session is not None and session.withdrawal is not None
        reply = session.withdrawal
        # Entered only once the card is taken: both lines in one write, as nothing happens
        # between them (a crash leaves both or neither, and neither is the state before).
        started = {"stan": reply.stan, "amount": session.staged_amount}
        self.journal.record_many(
            [(JournalEvent.CARD_TAKEN, {}), (JournalEvent.PRESENT_STARTED, started)]
        )
        try:
            result = self.dispenser.present()
            if not result.ok:
                raise DriverError(f"present failed: {result.error}")
        except DriverError as err:
            self._abandon_cash(reply, str(err))
            session.receipt.append("WITHDRAWAL FAILED - NOT DEBITED")
            self.fire(ControllerEvent.PRINT_RECEIPT)
            return
        self.journal.record(JournalEvent.PRESENTED, stan=reply.stan, amount=result.presented_amount)
        self.show("presenting_cash", amount=money(session.amount, self.config.currency_symbol))
        self._set_deadline(self.config.cash_take_seconds, self._cash_not_taken)

    def _poll_presenting_cash(self) -> None:
        if not self.dispenser.taken():
            return
        session = self.session
        assert session is not None and session.withdrawal is not None
        self._clear_deadline()
        self.journal.record(JournalEvent.TAKEN, stan=session.withdrawal.stan, amount=session.amount)
        session.staged_amount = 0
        session.receipt.append(f"WITHDRAWAL {money(session.amount, self.config.currency_symbol)}")
        self._queue_advice("completion", session.withdrawal, session.amount, session.amount)
        self.cash_available = self._dispenser_can_pay()
        self.fire(ControllerEvent.PRINT_RECEIPT)

    def _cash_not_taken(self) -> None:
        session = self.session
        assert session is not None and session.withdrawal is not None
        reply = session.withdrawal
        session.staged_amount = 0
        self.journal.record(JournalEvent.RETRACT_STARTED, stan=reply.stan, amount=session.amount)
        try:
            retracted = self.dispenser.retract()
            retracted_amount = int(retracted.amount)
        except DriverError as err:
            # Nobody can tell now how many notes were taken: neither a completion nor a reversal
            # would be honest. The dispenser still knows; once it answers again the ATM settles
            # from its counters before the next customer (SUSPECT only if they cannot tell).
            self.journal.record(
                JournalEvent.SETTLEMENT_DEFERRED,
                stan=reply.stan,
                amount=session.amount,
                error=str(err),
            )
            self.settlement.deferred = True
            session.receipt.append("CASH NOT TAKEN - UNDER REVIEW")
            self.cash_available = False
            self.fire(ControllerEvent.PRINT_RECEIPT)
            return
        handed_out = max(session.amount - retracted_amount, 0)
        self.journal.record(JournalEvent.RETRACTED, stan=reply.stan, amount=retracted_amount)
        if handed_out == session.amount:
            self._queue_advice("completion", reply, session.amount, handed_out)
        else:
            self._queue_advice("reversal", reply, session.amount, handed_out)
        session.receipt.append("CASH RETRACTED - NOT DEBITED" if not handed_out else "CASH TAKEN")
        self.cash_available = self._dispenser_can_pay()
        self.fire(ControllerEvent.PRINT_RECEIPT)

    # ----- receipt, capture, close ----------------------------------------------------------

    def on_enter_printing(self) -> None:
        session = self.session
        assert session is not None
        if not session.want_receipt:
            self.fire(ControllerEvent.CLOSE)  # the customer chose to go on without one
            return
        self.show("printing")
        lines = [
            self.clock.now().strftime("%Y-%m-%d %H:%M:%S"),
            f"TERMINAL {self.config.terminal_id}",
            f"CARD {mask_pan(session.card.pan)}",
            *session.receipt,
        ]
        try:
            self.printer.print_receipt(lines, title="ATM RECEIPT")
            outcome: NewEntry = (JournalEvent.RECEIPT_PRINTED, {"lines": len(lines)})
        except DriverError as err:
            outcome = (JournalEvent.RECEIPT_FAILED, {"error": str(err)})
            self.receipts_available = False
        self._closing_with = [outcome]  # one write with session_closed: nothing happens between
        self.fire(ControllerEvent.CLOSE)

    def on_enter_capturing_card(self) -> None:
        self._clear_deadline()
        self.show("capturing_card")
        assert self.session is not None
        try:
            self.card_reader.capture()
            self.journal.record(JournalEvent.CARD_CAPTURED, pan=self.session.card.pan)
        except DriverError as err:
            self.journal.record(JournalEvent.CAPTURE_FAILED, error=str(err))
            # Neither returned nor retained: serving the next customer would start a session
            # on this card (and lock it with their PIN attempts). Out of service until removed.
            self.card_stuck = True
            self.journal.record(JournalEvent.CARD_STUCK, pan=self.session.card.pan, error=str(err))
        self._set_deadline(2.0, lambda: self.fire(ControllerEvent.CLOSE))

    def on_enter_closing(self) -> None:
        self._clear_deadline()
        self.show("closing", notice="")
        lines, self._closing_with = self._closing_with, []
        self.journal.record_many([*lines, (JournalEvent.SESSION_CLOSED, {})])
        self._set_deadline(1.0, lambda: self.fire(ControllerEvent.DONE))
