"""Append-only files of JSON records whose every line proves it is whole (the journal, the advices).
One failed or short write stops the file: it raises DurableWriteError and refuses more appends.

Line format: one JSON object a line, ASCII, ending in a newline, its first key a CRC-32:

    {"crc": "5d3c2a1b", "at": "2026-11-28T12:00:00+00:00", "event": "authorised", "seq": 7}

`crc` is the CRC-32 (8 lowercase hex digits) of the exact bytes of the record without it,
`json.dumps(record, sort_keys=True)`, which is what follows `{"crc": "5d3c2a1b", ` on the line
with its opening brace restored. The newline closes the record; the line stays plain JSON.

Reading: a line is whole when it ends in a newline and its CRC matches (or, for files written
before checksums, it is a JSON record of the file's kind and no checksummed line comes before
it). A last line that is cut or fails its check is a torn tail (power cut or full disk in the
middle of a write): readers skip it and report it, and the next open for writing truncates it
away so a new line never merges with it. A bad line with anything whole after it is damage,
not a cut write: DurableLogCorrupt names FILE:LINE and nothing is skipped silently.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.disk_calls import REAL_DISK, DiskCalls

log = logging.getLogger(__name__)

CRC_KEY = "crc"
_CHECKSUMMED = re.compile(rb'\{"crc": "([0-9a-f]{8})"(?:, |(?=\}\Z))')
_WRITE_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


class DurableWriteError(OSError):
    """A record did not reach the disk whole (short write, full disk, I/O error, read-only)."""

    def __init__(
        self, path: str | os.PathLike[str], cause: str = "write failed", code: int = errno.EIO
    ) -> None:
        super().__init__(code, cause, os.fspath(path))
        self.path = Path(path)
        self.cause = cause

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.cause}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.cause, self.errno))


class DurableLogCorrupt(ValueError):
    """A damaged line with whole lines after it: the file was altered, not cut short."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(
            f"{path}:{line}: damaged record ({reason}) with whole records after it; "
            "the file is corrupt, not cut short: inspect that line or restore a copy"
        )
        self.path = path
        self.line = line
        self.reason = reason


def describe_os_error(operation: str, err: OSError) -> str:
    """`write failed: No space left on device (ENOSPC)`: the cause, in one line."""
    code = errno.errorcode.get(err.errno or 0, "")
    detail = err.strerror or str(err)
    return f"{operation} failed: {detail} ({code})" if code else f"{operation} failed: {detail}"


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One line: the record's canonical JSON with its CRC-32 as the first key."""
    if CRC_KEY in record:
        raise ValueError(f"the key {CRC_KEY!r} is reserved for the line's checksum")
    body = json.dumps(dict(record), sort_keys=True).encode("ascii")
    head = b'{"crc": "%08x"' % zlib.crc32(body)
    return head + (b"}" if body == b"{}" else b", " + body[1:]) + b"\n"


@dataclass(frozen=True)
class TornTail:
    """The cut last line of a file: skipped by readers, truncated by the next writer."""

    line: int
    offset: int
    size: int
    reason: str

    def describe(self, path: Path) -> str:
        return f"{path}:{self.line}: torn last record skipped ({self.size} bytes, {self.reason})"


@dataclass(frozen=True)
class Scan:
    """What a file holds: its whole records, where they end, and any torn tail after them."""

    records: list[dict[str, Any]]
    end: int
    torn: TornTail | None


def _parse(line: bytes) -> tuple[dict[str, Any] | None, bool, str]:
    """(record or None, whether it carried a checksum, why it is not whole)."""
    match = _CHECKSUMMED.match(line)
    if match is not None:
        body = b"{" + line[match.end() :]
        if b"%08x" % zlib.crc32(body) != match.group(1):
            return None, True, "checksum does not match"
        try:
            record = json.loads(body)
        except ValueError:
            return None, True, "not JSON"
        return (record, True, "") if isinstance(record, dict) else (None, True, "not a record")
    try:
        record = json.loads(line)
    except ValueError:
        return None, False, "no checksum and not JSON"
    if not isinstance(record, dict) or CRC_KEY in record:
        return None, False, "not a record"
    return record, False, ""


def scan_file(
    path: Path,
    legacy: Callable[[dict[str, Any]], bool] = lambda record: False,
    corrupt: type[DurableLogCorrupt] = DurableLogCorrupt,
) -> Scan:
    """Read every whole record of `path`; raise `corrupt` for damage before whole records.

    `legacy` says whether a line without checksum is a record this file held before checksums.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Scan([], 0, None)
    *lines, fragment = data.split(b"\n")
    records: list[dict[str, Any]] = []
    end = offset = 0
    checksummed_seen = False
    bad: TornTail | None = None
    for number, line in enumerate(lines, start=1):
        record, checksummed, reason = _parse(line)
        if record is not None and not checksummed and (checksummed_seen or not legacy(record)):
            record = None
            reason = "no checksum after checksummed lines" if checksummed_seen else "not a record"
        if bad is not None:  # anything after a bad line, whole or not, makes it damage
            raise corrupt(path, bad.line, bad.reason)
        if record is None:
            bad = TornTail(number, offset, len(line) + 1, reason)
        else:
            records.append(record)
            checksummed_seen = checksummed_seen or checksummed
            end = offset + len(line) + 1
        offset += len(line) + 1
    if fragment:
        if bad is not None:
            raise corrupt(path, bad.line, bad.reason)
        bad = TornTail(len(lines) + 1, offset, len(fragment), "no newline")
    return Scan(records, end, bad)


class DurableLog:
    """An append-only file of checksummed JSON lines; each append is one write and one fsync.

    After a failed append the file's tail is unknown, so every later append raises the same
    DurableWriteError until `reopen`, which truncates whatever is not whole.
    """

    def __init__(
        self,
        path: Path,
        *,
        legacy: Callable[[dict[str, Any]], bool] = lambda record: False,
        corrupt: type[DurableLogCorrupt] = DurableLogCorrupt,
        disk: DiskCalls | None = None,
        keep_open: bool = True,
    ) -> None:
        self.path = path
        self.disk: DiskCalls = disk if disk is not None else REAL_DISK
        self._legacy = legacy
        self._corrupt = corrupt
        self._keep_open = keep_open
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._end: int | None = None  # offset after the last whole record, once opened to write
        self._failure: DurableWriteError | None = None

    @property
    def failure(self) -> DurableWriteError | None:
        """The write error that stopped this file, until `reopen`."""
        return self._failure

    def scan(self) -> Scan:
        return scan_file(self.path, self._legacy, self._corrupt)

    def create(self) -> None:
        """Make sure the file and its folder exist (an empty journal is a journal)."""
        if self.path.exists():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.disk.close(self.disk.open(str(self.path), _WRITE_FLAGS, 0o600))
        except OSError as err:
            raise DurableWriteError(
                self.path, describe_os_error("create", err), err.errno or errno.EIO
            ) from err

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write `records` as one write and one fsync; raise DurableWriteError unless whole."""
        data = b"".join(encode_record(record) for record in records)
        with self._lock:
            if self._failure is not None:
                raise DurableWriteError(
                    self.path,
                    f"not written: an earlier write failed ({self._failure.cause}); "
                    "reopen the file after fixing the disk",
                    self._failure.errno or errno.EIO,
                )
            fd = self._open()
            try:
                written = self.disk.write(fd, data)
            except OSError as err:
                raise self._fail(describe_os_error("write", err), err.errno) from err
            if written != len(data):
                cause = f"short write: {written} of {len(data)} bytes"
                raise self._fail(cause, errno.EIO, partial=written > 0)
            try:
                self.disk.fsync(fd)
            except OSError as err:
                raise self._fail(describe_os_error("fsync", err), err.errno, partial=True) from err
            assert self._end is not None
            self._end += len(data)
            if not self._keep_open:
                self._close_fd()

    def _open(self) -> int:
        """The descriptor to append to; the first open cuts a torn tail before anything else."""
        if self._fd is not None:
            return self._fd
        scan = self.scan() if self._end is None else None
        try:
            self._fd = self.disk.open(str(self.path), _WRITE_FLAGS, 0o600)
        except OSError as err:
            raise self._fail(describe_os_error("open", err), err.errno) from err
        if scan is not None:
            if scan.torn is not None:
                try:
                    self.disk.ftruncate(self._fd, scan.end)
                    self.disk.fsync(self._fd)
                except OSError as err:
                    raise self._fail(describe_os_error("truncate", err), err.errno) from err
                log.warning("%s; truncated", scan.torn.describe(self.path))
            self._end = scan.end
        return self._fd

    def _fail(self, cause: str, code: int | None, *, partial: bool = False) -> DurableWriteError:
        """Cut the bytes of the failed write if the disk lets us, and stop the file.

        `partial`: bytes of the failed record may be in the file (a short write, or a full
        one whose fsync failed); a write that raised wrote nothing, but cutting costs nothing.
        """
        if self._fd is not None and self._end is not None:
            try:
                self.disk.ftruncate(self._fd, self._end)
                self.disk.fsync(self._fd)
            except OSError as err:
                if partial:
                    cut = describe_os_error("truncate", err)
                    cause += f"; the cut record stays until the next open ({cut})"
        self._close_fd()
        self._failure = DurableWriteError(self.path, cause, code or errno.EIO)
        return self._failure

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                self.disk.close(fd)
            except OSError as err:  # the data was fsynced; a failing close loses nothing
                log.warning("%s: close failed: %s", self.path, err)

    def reopen(self) -> None:
        """Forget a write failure; the next append re-reads the file and cuts a torn tail."""
        with self._lock:
            self._close_fd()
            self._end = None
            self._failure = None

    def close(self) -> None:
        with self._lock:
            self._close_fd()
