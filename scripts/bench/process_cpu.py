"""CPU that processes of this machine spend while a benchmark runs, read from /proc: the
PostgreSQL server of the run's database, a process with its children, this process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import sqlalchemy as sa

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of process `pid` so far, None if there is no such process."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def own_cpu_seconds() -> float:
    """CPU seconds of this process, all its threads (not its children)."""
    times = os.times()
    return times.user + times.system


def database_server_pids(engine: sa.Engine) -> list[int]:
    """The backends serving the engine's database and the server's own background processes (WAL
    writer, checkpointer, ...); none when the server runs on another machine."""
    with engine.connect() as conn:
        pids = conn.scalars(
            sa.text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() OR datname IS NULL"
            )
        ).all()
    return [pid for pid in pids if _command_name(pid) == "postgres"]


def process_tree(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(entry.name)[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    tree, waiting = [], [root]
    while waiting:
        pid = waiting.pop()
        tree.append(pid)
        waiting.extend(children.get(pid, ()))
    return tree


class CpuMeter:
    """CPU seconds the processes `pids()` names spend from start() to spent(). A process that
    ends in between is left out; one that starts in between counts in full."""

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self._pids = pids
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self._before = self._read()

    def spent(self) -> float:
        return sum(cpu - self._before.get(pid, 0.0) for pid, cpu in self._read().items())

    def _read(self) -> dict[int, float]:
        read = {pid: cpu_seconds(pid) for pid in self._pids()}
        return {pid: cpu for pid, cpu in read.items() if cpu is not None}


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and ")")."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
