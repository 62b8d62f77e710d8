"""Named I/O boundaries of the ATM process, and a trigger that kills the process at one of them.

Set ATM_SIM_CRASH_AT=N to die by SIGKILL at the N-th boundary; docs/crashtest.md tells the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping

CRASH_AT_VARIABLE = "ATM_SIM_CRASH_AT"
CRASH_LOG_VARIABLE = "ATM_SIM_CRASH_LOG"
# Kill this process instead of our own, and carry on: how the explorer kills the bank host at
# the ATM's own boundaries (the host dies the instant the ATM sends or receives).
CRASH_PID_VARIABLE = "ATM_SIM_CRASH_PID"

# True while a trigger is armed. Call sites test it before building a boundary name, so an ATM
# run without the variables pays one attribute read per boundary and nothing else.
active = False


class CrashSettingError(ValueError):
    """A crash-point variable holds something other than what it accepts."""


class _Trigger:
    """Counts boundaries; at the chosen one notes it in the side file and sends SIGKILL."""

    def __init__(self, crash_at: int, log_path: str | None, target_pid: int | None) -> None:
        self.crash_at = crash_at  # 0: count (and trace) only
        self.target_pid = target_pid
        self.count = 0
        self._lock = threading.Lock()
        self._log_fd = -1
        if log_path:
            self._log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _note(self, line: str) -> None:
        if self._log_fd >= 0:
            # A plain write is enough: the page cache outlives a killed process.
            os.write(self._log_fd, line.encode("utf-8", "replace"))

    def reached(self, name: str) -> None:
        global active
        with self._lock:
            self.count += 1
            if self.crash_at == 0:
                self._note(f"{self.count} {name}\n")
                return
            if self.count != self.crash_at:
                return
            self._note(f"{self.count} {name}\n")
            if self.target_pid is None:
                os.kill(os.getpid(), signal.SIGKILL)
                while True:  # the signal is on its way: not one more step may run
                    time.sleep(1.0)
            with contextlib.suppress(ProcessLookupError):  # already gone: carry on all the same
                os.kill(self.target_pid, signal.SIGKILL)
            active = False  # one kill per run; the ATM carries on as if nothing happened


_trigger: _Trigger | None = None


def parse_settings(env: Mapping[str, str]) -> tuple[int, str | None, int | None] | None:
    """(crash_at, log path, target pid) from the variables, or None when crash points are off."""
    raw_at = env.get(CRASH_AT_VARIABLE, "").strip()
    log_path = env.get(CRASH_LOG_VARIABLE, "").strip() or None
    raw_pid = env.get(CRASH_PID_VARIABLE, "").strip()
    if not raw_at and log_path is None:
        return None
    crash_at = 0
    if raw_at:
        if not raw_at.isdigit():
            raise CrashSettingError(
                f"{CRASH_AT_VARIABLE}={raw_at!r}: expected a boundary number (1, 2, ...) or 0 "
                "to count only"
            )
        crash_at = int(raw_at)
    target_pid = None
    if raw_pid:
        if not raw_pid.isdigit() or int(raw_pid) <= 1:
            raise CrashSettingError(f"{CRASH_PID_VARIABLE}={raw_pid!r}: expected a process id")
        target_pid = int(raw_pid)
    return crash_at, log_path, target_pid


def arm(env: Mapping[str, str] | None = None) -> bool:
    """Read the variables (os.environ by default) and arm the trigger; False when they are off.

    A bad value is reported in one line and leaves crash points off: the ATM keeps running.
    """
    global _trigger, active
    try:
        parsed = parse_settings(os.environ if env is None else env)
        trigger = None if parsed is None else _Trigger(*parsed)
    except (CrashSettingError, OSError) as err:
        print(f"atm-sim: crash points off: {err}", file=sys.stderr)
        trigger = None
    _trigger, active = trigger, trigger is not None
    return active


def reached(name: str) -> None:
    """The ATM is at boundary `name` (e.g. "journal:presented", "host.send:0200")."""
    trigger = _trigger
    if trigger is not None and active:
        trigger.reached(name)


def mark() -> int:
    """How many boundaries this process has reached so far (0 when crash points are off)."""
    trigger = _trigger
    return trigger.count if trigger is not None else 0


arm()
