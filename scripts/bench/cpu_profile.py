"""Where a benchmark's CPU goes: yappi on the CPU clock in every thread of this process, summed
by file (this repository's files by path, libraries by package, the standard library by module).
"""

from __future__ import annotations

import collections
import contextlib
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path

import yappi  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


class CpuProfile:
    """yappi on the CPU clock in every thread, from start() to report(). The profiler slows
    Python code several times (pure-Python code more than C): read shares, not times."""

    def start(self) -> None:
        yappi.clear_stats()
        yappi.set_clock_type("cpu")
        yappi.set_context_name_callback(_thread_name)
        yappi.start(profile_threads=True)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the block out of the profile (the statistics so far are kept)."""
        running = yappi.is_running()
        if running:
            yappi.stop()
        try:
            yield
        finally:
            if running:
                yappi.start(profile_threads=True)

    def report(self, units: int, what: str, top: int = 15, threads: str = "") -> None:
        """Stop, and print the CPU per `what` (`units` of them ran), by file and by function, of
        the threads whose names start with `threads` (all by default)."""
        yappi.stop()
        picked = {t.id for t in yappi.get_thread_stats() if t.name.startswith(threads)}
        stats = yappi.get_func_stats(filter_callback=lambda entry: entry.ctx_id in picked)
        by_place: collections.Counter[str] = collections.Counter()
        for entry in stats:
            by_place[_place(entry.module)] += entry.tsub
        total = sum(by_place.values()) or 1.0
        whose = f"threads {threads}*" if threads else "all threads"
        print(f"profile (yappi, CPU clock, {whose}): {total / units * 1000:.1f} ms per {what}")
        for place, seconds in by_place.most_common(top):
            print(f"  {100 * seconds / total:5.1f} %  {place}")
        print("  functions:")
        for entry in sorted(stats, key=lambda e: e.tsub, reverse=True)[:top]:
            print(
                f"  {100 * entry.tsub / total:5.1f} %  {entry.ncall / units:7.1f} calls/{what}  "
                f"{_place(entry.module)}:{entry.name}"
            )
        yappi.clear_stats()


@contextlib.contextmanager
def cpu_profile(units: int, what: str, top: int = 15) -> Iterator[None]:
    """Profile the block, which runs `units` of `what`, and print the report."""
    profile = CpuProfile()
    profile.start()
    try:
        yield
    finally:
        profile.report(units, what, top)


def _thread_name() -> str | None:
    # As yappi's own callback does: threading.current_thread() can deadlock inside the profiler
    # (and make a stand-in thread); None until the thread is registered (yappi asks again).
    thread = getattr(threading, "_active", {}).get(threading.get_ident())
    return None if thread is None else str(thread.name)


def _place(module: str) -> str:
    path = Path(module)
    if not path.is_absolute():
        return module  # a built-in
    path = path.resolve()
    if path.is_relative_to(ROOT) and "site-packages" not in path.parts:
        return str(path.relative_to(ROOT))
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1].removesuffix(".py")
    if path.is_relative_to(_STDLIB):
        return f"stdlib {path.relative_to(_STDLIB).with_suffix('')}"
    return str(path)
