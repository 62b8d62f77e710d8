"""The os calls the durable files make (journal, advices, STAN, device state), behind one protocol
so a test can fail any of them (device.disk_faults.DiskFaults stands in); REAL_DISK is the OS
itself. `replace_file` swaps a whole file in through them, for the ATM and the devices alike."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class DiskCalls(Protocol):
    def open(self, path: str, flags: int, mode: int = 0o777) -> int: ...
    def write(self, fd: int, data: bytes) -> int: ...
    def fsync(self, fd: int) -> None: ...
    def ftruncate(self, fd: int, length: int) -> None: ...
    def close(self, fd: int) -> None: ...
    def replace(self, source: str, target: str) -> None: ...
    def unlink(self, path: str) -> None: ...


class RealDisk:
    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)


REAL_DISK = RealDisk()


def replace_file(
    path: Path, data: bytes, disk: DiskCalls, error: Callable[[Path, str, int], OSError]
) -> None:
    """Replace `path` by `data` so that a crash or a full disk leaves the old or the new file: a
    temporary file beside it, one write, fsync, rename over it, fsync of the folder (so the new
    name is on disk too). A failed or short write raises `error(path, cause, errno)`, its cause in
    one line, and leaves the previous file in place."""
    temporary = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    step = "open"
    try:
        try:
            fd = disk.open(str(temporary), flags, 0o600)
        except FileNotFoundError:  # the folder is gone (or new): made only then, saving calls
            step = "create folder"
            path.parent.mkdir(parents=True, exist_ok=True)
            step = "open"
            fd = disk.open(str(temporary), flags, 0o600)
        try:
            step = "write"
            written = disk.write(fd, data)
            if written != len(data):
                step = f"short write: {written} of {len(data)} bytes"
                raise OSError(errno.EIO, "")
            step = "fsync"
            disk.fsync(fd)
        finally:
            disk.close(fd)
        step = "rename"
        disk.replace(str(temporary), str(path))
        step = "fsync of the folder"
        folder = disk.open(str(path.parent), os.O_RDONLY)
        try:
            disk.fsync(folder)
        finally:
            disk.close(folder)
    except OSError as err:
        if step not in ("create folder", "fsync of the folder"):
            # a read-only folder keeps the temporary file; the target is untouched either way
            with contextlib.suppress(OSError):
                disk.unlink(str(temporary))
        raise error(path, _cause(step, err), err.errno or errno.EIO) from err


def _cause(step: str, err: OSError) -> str:
    if not err.strerror:
        return step
    code = errno.errorcode.get(err.errno or 0, "")
    return f"{step} failed: {err.strerror} ({code})" if code else f"{step} failed: {err.strerror}"
