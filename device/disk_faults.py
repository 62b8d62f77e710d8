"""A disk that fails on demand: stands in for the os calls of the journal, the advice queue and
the devices' state files, so tests and a fault explorer get a full or failing disk without root.

    faults = DiskFaults()
    journal = Journal(path, disk=faults)       # or AdviceQueue(path, disk=faults),
    faults.arm("short_write", after_bytes=200)  # NoteLedger(..., disk=faults)

Kinds (each strikes the first operation that takes the file past `after_bytes` bytes written
since `arm`, and stays armed until `disarm`, as a full or failing disk stays so):

    short_write  the striking write puts only the bytes that fit on disk and returns their
                 count; later writes raise ENOSPC (the disk is full now)
    enospc       the striking write raises ENOSPC and writes nothing
    eio_write    the striking write raises EIO and writes nothing
    eio_fsync    writes succeed; fsync after the striking write raises EIO
    read_only    opens for writing, writes, truncates, renames and unlinks raise EROFS (as on a
                 file system remounted read-only); reads and fsync still work
"""

from __future__ import annotations

import errno
import os
import threading

FAULT_KINDS = ("short_write", "enospc", "eio_write", "eio_fsync", "read_only")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _os_error(code: int, path: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), path) if path else OSError(code, os.strerror(code))


class DiskFaults:
    """Fits config.disk_calls.DiskCalls: the os calls of the journal, advices and device state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kind: str | None = None
        self.after_bytes = 0
        self.written = 0  # bytes written through this object since `arm`
        self.struck: list[str] = []  # "kind on operation", one per failure handed out
        self._short_done = False

    def arm(self, kind: str, after_bytes: int = 0) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown disk fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if isinstance(after_bytes, bool) or not isinstance(after_bytes, int) or after_bytes < 0:
            raise ValueError(f"after_bytes must be a whole number of bytes, got {after_bytes!r}")
        with self._lock:
            self.kind = kind
            self.after_bytes = after_bytes
            self.written = 0
            self._short_done = False

    def disarm(self) -> None:
        with self._lock:
            self.kind = None

    def _strikes(self, kinds: tuple[str, ...], extra: int = 0) -> bool:
        """Whether an armed fault of `kinds` hits an operation adding `extra` bytes."""
        if self.kind not in kinds:
            return False
        if extra:
            return self.written + extra > self.after_bytes
        return self.written >= self.after_bytes

    def _fail(self, operation: str, code: int, path: str | None = None) -> OSError:
        self.struck.append(f"{self.kind} on {operation}")
        return _os_error(code, path)

    # ----- the os calls ---------------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        with self._lock:
            if flags & _WRITE_FLAGS and self._strikes(("read_only",)):
                raise self._fail("open", errno.EROFS, path)
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes) -> int:
        with self._lock:
            if self._strikes(("read_only",), len(data)):
                raise self._fail("write", errno.EROFS)
            if self._strikes(("enospc",), len(data)):
                raise self._fail("write", errno.ENOSPC)
            if self._strikes(("eio_write",), len(data)):
                raise self._fail("write", errno.EIO)
            if self._strikes(("short_write",), len(data)):
                if self._short_done:
                    raise self._fail("write", errno.ENOSPC)
                self._short_done = True
                self.struck.append("short_write on write")
                data = data[: max(0, self.after_bytes - self.written)]
            written = os.write(fd, data) if data else 0
            self.written += written
            return written

    def fsync(self, fd: int) -> None:
        with self._lock:
            if self.kind == "eio_fsync" and self.written > self.after_bytes:
                raise self._fail("fsync", errno.EIO)
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        with self._lock:
            if self._strikes(("read_only",)):
                raise self._fail("ftruncate", errno.EROFS)
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, source: str, target: str) -> None:
        with self._lock:
            if self._strikes(("read_only",)):
                raise self._fail("replace", errno.EROFS, target)
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        with self._lock:
            if self._strikes(("read_only",)):
                raise self._fail("unlink", errno.EROFS, path)
        os.unlink(path)
