"""The emulated devices' state files: JSON with a CRC-32 that proves the file is whole, replaced
atomically, so a device restarts from its last saved state or refuses to start, never guesses.

Format: one JSON object, one top-level key a line, each value in compact JSON (readable, and
written by json's C encoder: `indent=` takes its pure-Python one, six times slower); its "crc"
key holds the CRC-32 (8 lowercase hex digits) of `json.dumps(state, sort_keys=True,
separators=(",", ":"))`, the canonical JSON of every other key. A file without "crc" was written
before checksums and is read as it is.

Writing: a temporary file beside the target, one write, fsync, rename over the target, fsync the
folder. A failed or short write raises StateWriteError and leaves the previous file in place.
`disk` stands in for the os calls (config.disk_calls).
"""

from __future__ import annotations

import errno
import json
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from config.disk_calls import REAL_DISK, DiskCalls, replace_file

CRC_KEY = "crc"


class StateFileError(ValueError):
    """A state file that cannot be trusted; the message names the file and what is wrong."""


class StateWriteError(OSError):
    """A state file could not be replaced whole; the previous one is still in place."""

    def __init__(self, path: str | os.PathLike[str], cause: str, code: int = errno.EIO) -> None:
        super().__init__(code, cause, os.fspath(path))
        self.path = Path(path)
        self.cause = cause

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.cause}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.cause, self.errno))


def _checksum(state: Mapping[str, Any]) -> str:
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return f"{zlib.crc32(canonical.encode('ascii')):08x}"


def dump_state(state: Mapping[str, Any]) -> bytes:
    """The bytes of a state file holding `state` (an old "crc" key is recomputed)."""
    body = {k: v for k, v in state.items() if k != CRC_KEY}
    keys = sorted({**body, CRC_KEY: _checksum(body)}.items())
    lines = (f"{json.dumps(key)}: {json.dumps(value, sort_keys=True)}" for key, value in keys)
    return ("{\n " + ",\n ".join(lines) + "\n}\n").encode("ascii")


def read_state(path: Path, what: str = "device state") -> dict[str, Any]:
    """The state saved in `path`; StateFileError if it is unreadable or fails its checksum."""
    try:
        text = path.read_bytes()
    except OSError as err:
        raise StateFileError(f"{path}: unreadable {what}: {err.strerror or err}") from err
    try:
        state = json.loads(text)
    except ValueError as err:
        raise StateFileError(
            f"{path}: unreadable {what}: not whole JSON ({err}); restore a good copy"
        ) from err
    if not isinstance(state, dict):
        raise StateFileError(f"{path}: unreadable {what}: expected a JSON object")
    if CRC_KEY in state:
        stored = state.pop(CRC_KEY)
        if stored != _checksum(state):
            raise StateFileError(
                f"{path}: unreadable {what}: checksum {stored!r} does not match the content "
                "(damaged or edited); restore a good copy, or count the device and remove the file"
            )
    return state


def write_state(path: Path, state: Mapping[str, Any], disk: DiskCalls | None = None) -> bytes:
    """Replace `path` by `state` so that a crash or a full disk leaves the old or the new file;
    the bytes written (JSON of `state` with its "crc" key)."""
    data = dump_state(state)
    replace_file(path, data, disk if disk is not None else REAL_DISK, StateWriteError)
    return data
