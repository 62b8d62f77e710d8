"""The os calls the durable files make (journal, advices, device state), behind one protocol so a
test can fail any of them (device.disk_faults.DiskFaults stands in); REAL_DISK is the OS itself."""

from __future__ import annotations

import os
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
