"""The kiosk's main loop: each frame handles input, steps the controller a few times and draws
the fascia, at the full frame rate while something changes and a few times a second when idle;
a headless mode runs a customer script through synthetic events, with screenshots.
"""

from __future__ import annotations

import argparse
import binascii
import io
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pygame

from config.settings import Settings
from device.clock import Clock, SystemClock, VirtualClock
from device.sim.atm_home import atm_state_dir
from device.sim.bank_stack import BankStack
from device.sim.customer_script import ScriptError, parse_script, run_action
from device.sim.kiosk import view_model
from device.sim.kiosk.fascia import Fascia
from device.sim.kiosk.input_map import (
    Action,
    Hotspot,
    InsertCard,
    Operator,
    Press,
    Quit,
    Take,
    TogglePanel,
    map_event,
)
from device.sim.kiosk.layout import Layout
from device.sim.kiosk.operator_panel import OperatorPanel
from device.sim.kiosk.sounds import Sounds
from device.sim.kiosk.view_model import (
    SERVICE_STATES,
    FasciaState,
    PanelState,
    armed_keys,
    blinks,
    cash_event,
    journal_lines,
)
from device.sim.simulated_atm import HostAddress, SimulatedAtm

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1024, 768)
STEPS_PER_FRAME = 4
STEP_BUDGET_SECONDS = 0.008  # leaves room in a 16 ms frame for drawing
FPS = 60
# With no input and nothing new on the fascia for ACTIVE_SECONDS the loop stops running frames
# at FPS: it runs one every IDLE_FRAME_SECONDS (sooner for a due controller timer, a blink or
# a message running out) and in between only looks for input, every INPUT_CHECK_SECONDS.
ACTIVE_SECONDS = 0.5
IDLE_FRAME_SECONDS = 0.25
INPUT_CHECK_SECONDS = 1 / FPS
BLINK_SECONDS = 0.5
MESSAGE_SECONDS = 4.0
PRESSED_SECONDS = 0.15
JOURNAL_REFRESH_SECONDS = 0.5
# Faults that need a parameter to mean anything get a sensible one from the panel.
FAULT_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("pin_pad", "key_stuck"): {"key": "5"},
    ("cash_dispenser", "jam"): {"after_notes": 1},
}


class KioskError(RuntimeError):
    """The kiosk cannot do what a script or the command line asked."""


class HostSwitch:
    """The in-process bank host the kiosk may take down and bring back (host-down fault)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.running = True

    def toggle(self) -> str:
        if self.running:
            self.server.stop()
            self.running = False
            return "host taken down: the ATM will find it unreachable"
        self.server.start()
        self.running = True
        return f"host back up on port {self.server.port}"


@dataclass
class _Timed:
    now: Callable[[], float] = time.monotonic
    text: str = ""
    until: float = 0.0

    def set(self, text: str, seconds: float = MESSAGE_SECONDS) -> None:
        self.text, self.until = text, self.now() + seconds

    def get(self) -> str:
        return self.text if self.now() < self.until else ""

    def left(self) -> float | None:
        """Seconds until the text goes; None when none is shown."""
        left = self.until - self.now()
        return left if self.text and left > 0 else None


class KioskApp:
    """A pygame window on a started SimulatedAtm. `frame()` runs one frame; `run()` loops.

    `now` is the clock of what the kiosk itself times (the card light's blink, messages, the
    pressed key, the quiet wait): real monotonic time unless a test passes another.
    """

    def __init__(
        self,
        atm: SimulatedAtm,
        *,
        size: tuple[int, int] = DEFAULT_SIZE,
        host_switch: HostSwitch | None = None,
        sounds: bool = True,
        steps_per_frame: int = STEPS_PER_FRAME,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        pygame.init()
        pygame.display.set_caption(f"ATM simulator - {atm.terminal_id}")
        self.window = pygame.display.set_mode(size, pygame.RESIZABLE)
        self.atm = atm
        self.host_switch = host_switch
        self.steps_per_frame = steps_per_frame
        self.fascia = Fascia()
        self.panel = OperatorPanel(self.fascia)
        self.sounds = Sounds(enabled=sounds)
        self.show_panel = False
        self.panel_tab = "status"
        self.fault_mode = "persistent"
        self.layout = Layout(self.window.get_size(), self.show_panel)
        self.hotspots: list[Hotspot] = []
        self.running = True
        self.frames = 0
        self.draws = 0  # frames that drew and flipped the window
        self.now = now
        self._active_until = now() + ACTIVE_SECONDS
        self._seen: tuple[Any, ...] | None = None  # what changed last, less what the kiosk times
        self.recovery_report: list[str] = list(atm.controller.recovery_report)
        self._owned: list[SimulatedAtm] = []  # ATMs the kiosk started after a power failure
        self._receipts_taken = 0
        self.reading: int | None = None  # index of the receipt held up to read
        self._receipt_images: dict[int, pygame.Surface | None] = {}
        self._cash_message = _Timed(now)
        self._panel_message = _Timed(now)
        self._pressed = _Timed(now)
        self._counters = self._dispenser_counters()
        self._journal_lines: tuple[str, ...] = ()
        self._journal_read_at = 0.0
        self._drawn: tuple[Any, ...] | None = None

    # ----- life -------------------------------------------------------------------------------

    def close(self) -> None:
        for atm in self._owned:
            atm.stop()
        self._owned = []
        self.sounds.close()
        self._receipt_images.clear()
        self.fascia.forget()
        # Only the window goes: the printer emulator's receipt renderer keeps pygame fonts
        # across calls, and would crash on its next receipt if the font module were shut down.
        pygame.display.quit()

    def run(self, fps: int = FPS) -> None:
        """The interactive loop, until the window is closed (or Ctrl+Q): frames at `fps` while
        anything changes, and while idle a frame only when one is due or input comes."""
        clock = pygame.time.Clock()
        while self.running:
            self.frame()
            if self.busy():
                clock.tick(fps)
            else:
                self.wait_for_input(self.idle_wait())

    def busy(self) -> bool:
        """Whether input came or the fascia changed in the last ACTIVE_SECONDS."""
        return self.now() < self._active_until

    def idle_wait(self) -> float:
        """Seconds the idle loop may wait for input before the next frame is due: at most
        IDLE_FRAME_SECONDS, less when the controller's next timer, the card light's next blink
        or the end of a message or a pressed key comes first."""
        waits = [IDLE_FRAME_SECONDS]
        deadline = self.atm.controller.next_deadline
        if deadline is not None:
            waits.append(deadline - self.atm.clock.monotonic())
        drawn = self._drawn[0] if self._drawn else None
        if isinstance(drawn, FasciaState) and blinks(
            drawn.entry_enabled, drawn.card_media, bool(drawn.notes)
        ):
            waits.append(BLINK_SECONDS - self.now() % BLINK_SECONDS)
        for timed in (self._pressed, self._cash_message, self._panel_message):
            left = timed.left()
            if left is not None:
                waits.append(left)
        return max(min(waits), 1 / FPS)  # a timer due now: never faster than the frame rate

    def wait_for_input(self, seconds: float) -> bool:
        """Sleep up to `seconds`, looking for input every INPUT_CHECK_SECONDS (pygame's own
        event.wait polls every millisecond); returns whether input came."""
        end = time.monotonic() + seconds
        while not pygame.event.peek():
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, INPUT_CHECK_SECONDS))
        return True

    def _activity(self) -> None:
        self._active_until = self.now() + ACTIVE_SECONDS

    def frame(self) -> None:
        """One frame: input, a few controller steps, and a redraw if anything changed."""
        self.frames += 1
        for event in pygame.event.get():
            self._activity()
            if event.type in (pygame.VIDEORESIZE, pygame.WINDOWSIZECHANGED):
                self._relayout()
                continue
            action = map_event(event, self.layout, self.hotspots, list(self.atm.wallet))
            if action is not None:
                self.perform(action)
        self.step_controller()
        self.draw()

    def step_controller(self) -> None:
        deadline = time.perf_counter() + STEP_BUDGET_SECONDS
        # Between customers a step only asks the card reader whether a card came: once a frame
        # is soon enough, and the idle kiosk then costs a quarter of the device round trips.
        steps = 1 if self.atm.controller.state in SERVICE_STATES else self.steps_per_frame
        for _ in range(steps):
            try:
                self.atm.controller.step()
            except Exception as err:  # the window stays up whatever the ATM does
                log.exception("controller step failed")
                self._panel_message.set(f"controller error: {err}", 10)
                return
            if time.perf_counter() >= deadline:
                return

    def _relayout(self) -> None:
        self.window = pygame.display.get_surface()
        self.layout = Layout(self.window.get_size(), self.show_panel)
        self._drawn = None

    # ----- actions ---------------------------------------------------------------------------

    def perform(self, action: Action) -> None:
        """Do what a key or click asked, through the devices' own customer and operator API."""
        self._activity()
        bay = self.atm.bay
        if isinstance(action, Quit):
            self.running = False
        elif isinstance(action, TogglePanel):
            self.show_panel = not self.show_panel
            self._relayout()
        elif self.reading is not None and not isinstance(action, Operator | Press):
            self.reading = None  # any click or R puts the receipt away
        elif isinstance(action, Press):
            if self.reading is not None and action.key == "cancel":
                self.reading = None
                return
            if not (action.key.isdigit() and bay.pin_pad.mode == "pin_entry"):
                # A digit key drawn pressed during PIN entry would show the PIN to the room.
                self._pressed.set(action.key, PRESSED_SECONDS)
            self.sounds.click()
            bay.pin_pad.press(action.key)
        elif isinstance(action, InsertCard):
            try:
                bay.card_reader.insert_card(action.card_id)
            except (RuntimeError, ValueError) as err:
                self._cash_message.set("")
                self._panel_message.set(str(err))
                self.sounds.alert()
        elif isinstance(action, Take):
            self._take(action.item)
        elif isinstance(action, Operator):
            self._operate(action)

    def _take(self, item: str) -> None:
        bay = self.atm.bay
        if item == "card":
            if bay.card_reader.state.value == "gate":
                bay.card_reader.take_card()
                return
        elif item == "cash":
            if bay.cash_dispenser.take_cash():
                return
        elif item == "receipt":
            waiting = self._waiting_receipts()
            if waiting:
                self.reading = waiting[0]
                self._receipts_taken = waiting[0] + 1
                return
        self.sounds.beep()  # nothing there to take

    def _operate(self, action: Operator) -> None:
        message = ""
        try:
            message = self._operator_command(action.command, action.argument)
        except Exception as err:  # an operator mistake is one line, never a crash
            message = f"{action.command}: {err}"
            self.sounds.alert()
        if message:
            self._panel_message.set(message, 8)
        self._drawn = None

    def _operator_command(self, command: str, argument: str) -> str:
        bay = self.atm.bay
        controller = self.atm.controller
        if command == "tab":
            self.panel_tab = argument
            return ""
        if command == "fault":
            target, fault = argument.split(":", 1)
            if f"{target}:{fault}" in self._armed():
                bay.clear(target, fault)
                return f"cleared {target} {fault}"
            return f"armed {target}: " + bay.inject(
                target, fault, mode=self.fault_mode, **FAULT_PARAMS.get((target, fault), {})
            )
        if command == "fault_mode":
            self.fault_mode = argument
            return f"faults switched on from now fire {argument}" + (
                "" if argument == "once" else " (until cleared)"
            )
        if command == "host":
            if self.host_switch is None:
                return "the host is not run by this kiosk: host down is unavailable"
            return self.host_switch.toggle()
        if command == "power":
            return self.power_failure()
        if command == "supervisor":
            if controller.state == "supervisor":
                controller.close_supervisor()
                return "left supervisor mode"
            if not controller.open_supervisor():
                return f"supervisor mode needs the ATM idle or out of service ({controller.state})"
            return "supervisor mode"
        if command == "clear_faults":
            bay.clear()
            return "every device and link fault cleared"
        if controller.state not in SERVICE_STATES:
            return f"not during a customer session ({controller.state})"
        if command == "replenish":
            return self.replenish()
        if command == "cassette":
            return self.exchange_cassette(argument)
        if command == "empty_retain_bin":
            return f"{bay.card_reader.empty_retain_bin()} cards taken from the retain bin"
        if command == "purge":
            if controller.state != "supervisor":
                return "a purge needs supervisor mode"
            return f"{controller.purge_dispenser()} notes purged to the reject bin"
        if command == "remove_card":
            if controller.state != "supervisor":
                return "removing a card needs supervisor mode"
            removed = bay.card_reader.remove_card()
            controller.card_removed()
            return f"card {removed} removed from the reader" if removed else "no card was inside"
        if command == "load_paper":
            bay.receipt_printer.load_paper()
            return "new paper roll loaded"
        return ""

    def replenish(self) -> str:
        """Fill every cassette to capacity: the controller's exchange, in supervisor mode."""
        controller = self.atm.controller
        if controller.state != "supervisor":
            return "replenishment needs supervisor mode"
        full = {c.number: c.capacity for c in self.atm.bay.cash_dispenser.cassettes}
        controller.replenish(full)
        return "cassettes filled; " + ", ".join(
            f"{n}: {count}" for n, count in sorted(full.items())
        )

    def exchange_cassette(self, argument: str) -> str:
        """One cassette's count changed ("N:+10", "N:-10", "N:empty", "N:full") through the
        controller's journalled exchange, in supervisor mode."""
        controller = self.atm.controller
        if controller.state != "supervisor":
            return "replenishment needs supervisor mode"
        number_text, change = argument.split(":", 1)
        cassettes = {c.number: c for c in self.atm.bay.cash_dispenser.cassettes}
        cassette = cassettes.get(int(number_text))
        if cassette is None:
            return f"no cassette {number_text}"
        if change == "empty":
            count = 0
        elif change == "full":
            count = cassette.capacity
        else:
            count = min(max(cassette.count + int(change), 0), cassette.capacity)
        controller.replenish({cassette.number: count})
        return f"cassette {cassette.number}: {cassette.count} -> {count} notes"

    def power_failure(self) -> str:
        """Cut the power: drop the ATM as it stands and start a new one on the same state."""
        old = self.atm
        old.stop()
        fresh = old.successor()
        self.recovery_report = fresh.start()
        self._owned.append(fresh)
        self.atm = fresh
        self.reading = None
        self._receipts_taken = 0
        self._receipt_images.clear()
        self._counters = self._dispenser_counters()
        self._journal_read_at = 0.0
        lines = self.recovery_report or ["nothing to recover"]
        return "power restored; recovery: " + "; ".join(lines)

    # ----- reading the devices ---------------------------------------------------------------

    def _armed(self) -> frozenset[str]:
        return armed_keys(self.atm.bay.armed())

    def _dispenser_counters(self) -> dict[str, int]:
        return dict(self.atm.bay.cash_dispenser.counters)

    def _waiting_receipts(self) -> list[int]:
        count = len(self.atm.bay.receipt_printer.receipts)
        return list(range(self._receipts_taken, count))

    def fascia_state(self) -> FasciaState:
        counters = self._dispenser_counters()
        message, alert = cash_event(self._counters, counters)
        if message:
            self._cash_message.set(message)
        if alert:
            self.sounds.alert()
        self._counters = counters
        return view_model.fascia_state(
            self.atm,
            cash_message=self._cash_message.get(),
            receipts_waiting=len(self._waiting_receipts()),
            pressed=self._pressed.get(),
            blink_phase=int(self.now() / BLINK_SECONDS) % 2 == 0,
        )

    def panel_state(self) -> PanelState:
        return view_model.panel_state(
            self.atm,
            tab=self.panel_tab,
            fault_mode=self.fault_mode,
            host_running=None if self.host_switch is None else self.host_switch.running,
            message=self._panel_message.get(),
            journal=self._journal_tail(),
            recovery_report=self.recovery_report,
        )

    def _journal_tail(self) -> tuple[str, ...]:
        # tail() scans the whole journal file: a few times a second, not every frame.
        now = self.now()
        if now - self._journal_read_at >= JOURNAL_REFRESH_SECONDS:
            self._journal_read_at = now
            self._journal_lines = journal_lines(self.atm.journal.tail(12))
        return self._journal_lines

    # ----- drawing ---------------------------------------------------------------------------

    def receipt_image(self, index: int) -> pygame.Surface | None:
        if index not in self._receipt_images:
            receipt = self.atm.bay.receipt_printer.receipts[index]
            try:
                self._receipt_images[index] = pygame.image.load(
                    io.BytesIO(receipt.png_bytes()), "receipt.png"
                )
            except (pygame.error, OSError) as err:
                log.warning("receipt image unreadable, showing its text: %s", err)
                self._receipt_images[index] = None
        return self._receipt_images[index]

    def draw(self, force: bool = False) -> bool:
        """Redraw if anything shown changed; returns whether it drew."""
        fascia = self.fascia_state()
        panel = self.panel_state() if self.show_panel else None
        # What the kiosk times itself (the blink, a message or a pressed key running out) and
        # the panel's device counters, which move with every poll, keep no full frame rate.
        quiet = replace(fascia, blink=False, pressed="", cash_message="")
        seen = (self.atm.controller.state, quiet, self.reading, self.show_panel)
        if seen != self._seen:
            self._seen = seen
            self._activity()
        key = (fascia, panel, self.reading, self.window.get_size())
        if not force and key == self._drawn:
            return False
        self._drawn = key
        self.draws += 1
        self.hotspots = self.fascia.draw(self.window, self.layout, fascia)
        if panel is not None:
            self.hotspots += self.panel.draw(self.window, self.layout, panel)
        if self.reading is not None:
            receipts = self.atm.bay.receipt_printer.receipts
            text = receipts[self.reading].text if self.reading < len(receipts) else ""
            image = self.receipt_image(self.reading) if self.reading < len(receipts) else None
            self.hotspots += self.fascia.draw_receipt(self.window, self.layout, image, text)
        pygame.display.flip()
        return True

    def screenshot(self, path: Path) -> Path:
        self.draw(force=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        pygame.image.save(self.window, str(path))
        return path


# ----- a customer script through the window --------------------------------------------------


class KioskCustomer:
    """The customer-script verbs, done as key presses posted to the kiosk's event queue."""

    SETTLE_SECONDS = 0.05

    def __init__(self, kiosk: KioskApp, clock: Clock) -> None:
        self.kiosk = kiosk
        self.clock = clock

    def _post_key(self, key: int, mod: int = 0) -> None:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=mod, unicode=""))
        self.settle()

    def settle(self, limit: float = 3.0) -> None:
        """Run frames until the screen and the devices stop changing for a moment."""
        deadline = time.monotonic() + limit
        quiet_since = time.monotonic()
        seen: Any = None
        while time.monotonic() < deadline:
            self.kiosk.frame()
            atm = self.kiosk.atm
            # The fascia only: the operator panel's counters move with every device poll.
            drawn = self.kiosk._drawn
            now_seen = (atm.controller.state, atm.controller.screen, drawn[0] if drawn else None)
            if now_seen != seen:
                seen, quiet_since = now_seen, time.monotonic()
            elif time.monotonic() - quiet_since >= self.SETTLE_SECONDS:
                return
            time.sleep(0.001)

    def insert_card(self, card_id: str) -> None:
        ids = list(self.kiosk.atm.wallet)
        if card_id not in ids:
            raise KioskError(f"no card {card_id!r} in the wallet; cards: {', '.join(ids)}")
        if ids.index(card_id) >= 9:
            self.kiosk.perform(InsertCard(card_id))  # no shortcut beyond Ctrl+9
            self.settle()
            return
        self._post_key(getattr(pygame, f"K_{ids.index(card_id) + 1}"), pygame.KMOD_LCTRL)

    def press(self, key: str) -> None:
        keys = {
            "enter": pygame.K_RETURN,
            "cancel": pygame.K_ESCAPE,
            "clear": pygame.K_BACKSPACE,
            "backspace": pygame.K_DELETE,
        }
        if key in keys:
            self._post_key(keys[key])
        elif key.startswith("F"):
            self._post_key(getattr(pygame, f"K_{key}"))
        else:
            self._post_key(getattr(pygame, f"K_{key}"))

    def take(self, item: str) -> None:
        self._post_key({"card": pygame.K_c, "cash": pygame.K_m, "receipt": pygame.K_r}[item])

    def wait_for_state(self, state: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        atm = self.kiosk.atm
        while atm.controller.state != state:
            if time.monotonic() >= deadline:
                raise KioskError(
                    f"waited {seconds:g} s for state {state}; the ATM is in {atm.controller.state} "
                    f"showing {atm.controller.screen.name!r}"
                )
            self.settle()
            if atm.controller.state != state:
                atm.jump_to_next_timer()
            atm = self.kiosk.atm
        self.settle()

    def advance(self, seconds: float) -> None:
        if not isinstance(self.clock, VirtualClock):
            raise KioskError("advance needs the virtual clock")
        self.clock.advance(seconds)
        self.settle()

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.kiosk.frame()
            time.sleep(0.005)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def run_script(
    kiosk: KioskApp,
    lines: Iterable[str],
    screenshots: Path | None,
    clock: Clock,
    say: Callable[[str], None] = print,
) -> list[Path]:
    """Run a customer script through the window; a PNG after each step when `screenshots`."""
    actions = parse_script(lines)
    customer = KioskCustomer(kiosk, clock)
    saved: list[Path] = []
    customer.settle()
    if screenshots is not None:
        saved.append(kiosk.screenshot(screenshots / "00-start.png"))
    for number, action in enumerate(actions, start=1):
        say(f"> {action}")
        run_action(customer, action)
        if screenshots is not None:
            # str(action) shows typed digits as stars: the file name never carries a PIN.
            name = _slug(str(action).replace("*", "x"))
            saved.append(kiosk.screenshot(screenshots / f"{number:02d}-{name}.png"))
    return saved


# ----- atm-sim kiosk -------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise KioskError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1024x768")
    return int(match.group(1)), int(match.group(2))


def run_kiosk(settings: Settings, args: argparse.Namespace, profile: Any) -> int:
    """`atm-sim kiosk`: the window (or a headless scripted session) on a simulated ATM.

    `profile` is the loaded ATM profile (the assembly loads it: device code imports no
    peripherals); it must name a host for its MAC key.
    """
    headless = bool(args.headless)
    if headless:
        # Read by SDL at pygame.init(): no window, no sound card needed.
        os.environ["SDL_VIDEODRIVER"] = "dummy"
        os.environ["SDL_AUDIODRIVER"] = "dummy"
    try:
        size = _size(args.size)
        script_lines = args.script.read_text(encoding="utf-8").splitlines() if args.script else None
        if script_lines is not None:
            parse_script(script_lines)
        if headless and script_lines is None:
            raise KioskError("--headless needs --script FILE")
    except (KioskError, ScriptError, OSError) as err:
        print(f"atm-sim kiosk: {err}", file=sys.stderr)
        return 2
    if profile.host is None:
        print(f"atm-sim kiosk: {profile.source}: host: missing", file=sys.stderr)
        return 2
    mac_key = binascii.unhexlify(profile.host.mac_key)
    # A scripted run uses the virtual clock so that its waits skip the ATM's timeouts.
    clock: Clock = VirtualClock() if script_lines is not None else SystemClock()
    with ExitStack() as stack:
        host_switch = None
        if args.port is None:
            print("Starting the bank (PostgreSQL) and its host...", file=sys.stderr)
            bank = stack.enter_context(BankStack(settings))
            address = HostAddress("127.0.0.1", bank.server.port, mac_key)
            host_switch = HostSwitch(bank.server)
        else:
            address = HostAddress(args.host or profile.host.address, args.port, mac_key)
        atm = SimulatedAtm(
            profile,
            address,
            args.state_dir or atm_state_dir(settings, profile.terminal_id),
            clock=clock,
            session_timeout_seconds=settings.session_timeout_seconds,
        )
        stack.enter_context(atm)
        kiosk = KioskApp(atm, size=size, host_switch=host_switch, sounds=not headless)
        stack.callback(kiosk.close)
        if script_lines is None:
            kiosk.run()
            return 0
        try:
            saved = run_script(kiosk, script_lines, args.screenshots, clock)
        except (KioskError, ScriptError, RuntimeError) as err:
            print(f"atm-sim kiosk: {err}", file=sys.stderr)
            return 1
        if args.screenshots is not None:
            print(f"{len(saved)} screenshots in {args.screenshots}")
        if not headless:
            kiosk.run()
    return 0
