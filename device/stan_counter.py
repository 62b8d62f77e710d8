"""The ATM's system trace audit numbers (STAN, 000001..999999, wrapping), each on disk before use,
so a restart never reuses a STAN the host may have seen.

The file is an append-only log of checksummed lines (device/durable_log.py), `{"stan": 123}`,
the last whole line being the last STAN: a number costs one append and one fsync. Every
COMPACT_AFTER lines, and at its first write, the file is replaced by one holding the last STAN
alone (temporary file, fsync, rename, fsync of the folder). A file of the older format, a bare
6-digit STAN, is read and replaced the same way at its first new STAN.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from config.disk_calls import REAL_DISK, DiskCalls, replace_file
from device.durable_log import (
    DurableLog,
    DurableLogCorrupt,
    DurableWriteError,
    encode_record,
)

STAN_MAX = 999_999
COMPACT_AFTER = 4096  # lines in the file before it is replaced by its last STAN alone
_OLD_FORMAT = re.compile(rb"([0-9]{6})\n?")


class StanStoreError(ValueError):
    """The STAN file holds no STAN that can be trusted, or a STAN given is not one."""


def _stan(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= STAN_MAX:
        raise StanStoreError(f"{where}: {value!r} is not a STAN (1..{STAN_MAX})")
    return value


class StanCounter:
    """STANs in turn, kept in `path` when given (in memory only otherwise)."""

    def __init__(
        self, path: Path | None = None, start: int = 1, *, disk: DiskCalls | None = None
    ) -> None:
        self.path = path
        self.disk: DiskCalls = disk if disk is not None else REAL_DISK
        self._lock = threading.Lock()
        self._last = (start - 2) % STAN_MAX + 1  # so that the first next() gives `start`
        self._lines = 0  # in the file; 0: the next store replaces the file
        self._log: DurableLog | None = None
        if path is not None and path.exists():
            self._last, self._lines = self._read(path)

    def _read(self, path: Path) -> tuple[int, int]:
        """The last STAN in `path` and its number of lines (0 for the older format)."""
        data = path.read_bytes()
        old = _OLD_FORMAT.fullmatch(data)
        if old is not None:
            return _stan(int(old.group(1)), str(path)), 0
        try:
            scan = DurableLog(path, disk=self.disk).scan()
        except DurableLogCorrupt as err:
            raise StanStoreError(str(err)) from err
        if not scan.records:
            # Only a power cut during the first write leaves a torn line alone, and that STAN
            # was never used; anything else is not a STAN file. Either way a person decides.
            raise StanStoreError(
                f"{path}: holds no whole STAN ({data[:24]!r}); remove it and the ATM takes the "
                "host's last STAN at sign-on"
            )
        return _stan(scan.records[-1].get("stan"), str(path)), len(scan.records)

    @property
    def last(self) -> str:
        with self._lock:
            return f"{self._last:06d}"

    def next(self) -> str:
        with self._lock:
            value = self._last % STAN_MAX + 1
            if self.path is not None:
                self._store(self.path, value)
            self._last = value
            return f"{value:06d}"

    def resync(self, last_seen: str) -> bool:
        """Move forward to the host's last STAN if it is ahead of ours; True if it moved.

        After a lost or new state folder the counter restarts at 000001 while the host has seen
        later STANs of this terminal today. "Ahead" is taken around the 999999 wrap: within
        half the range after our last STAN. A host STAN behind ours changes nothing.
        """
        if len(last_seen) != 6 or not last_seen.isascii() or not last_seen.isdigit():
            raise StanStoreError(f"the host's last STAN {last_seen[:12]!r} is not 6 digits")
        seen = int(last_seen)
        if not 1 <= seen <= STAN_MAX:
            raise StanStoreError(f"the host's last STAN {last_seen!r} is out of range")
        with self._lock:
            distance = (seen - self._last) % STAN_MAX
            if not 0 < distance <= STAN_MAX // 2:
                return False
            if self.path is not None:
                self._store(self.path, seen)
            self._last = seen
            return True

    def close(self) -> None:
        with self._lock:
            self._close_log()

    def _store(self, path: Path, value: int) -> None:
        """`value` on disk before it is used; DurableWriteError if it is not (nothing is used)."""
        if self._lines == 0 or self._lines >= COMPACT_AFTER:
            self._replace(path, value)
            return
        if self._log is None or self._log.failure is not None:
            # after a failed append, a new log cuts whatever of it reached the file
            self._close_log()
            self._log = DurableLog(path, disk=self.disk)
        self._log.append([{"stan": value}])
        self._lines += 1

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _replace(self, path: Path, value: int) -> None:
        """A new file holding `value` alone, swapped in whole and its folder synced."""
        self._close_log()
        replace_file(path, encode_record({"stan": value}), self.disk, DurableWriteError)
        self._lines = 1
