"""The one line `atm-sim` prints for an error no command handled itself: the file of a disk
error, the server of a database error, and otherwise the error's type and message.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from pathlib import PurePath
from types import TracebackType

# Errors that are about the file being written, though the OS does not always say which file
# (a write or a close on a full disk names none).
FILE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def error_line(err: BaseException) -> str:
    """`atm-sim: ...` in one line, without the traceback."""
    from host.database import DatabaseError

    if isinstance(err, DatabaseError):
        return f"atm-sim: {_first_line(str(err))}"
    for cause in _chain(err):
        if isinstance(cause, OSError):
            file = _file_of(cause)
            if file is not None:
                reason = cause.strerror or _first_line(str(cause))
                return f"atm-sim: {file}: {reason}"
    return f"atm-sim: {type(err).__name__}: {_first_line(str(err))}"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _file_of(err: OSError) -> str | None:
    if err.filename is not None:
        name = os.fsdecode(err.filename)
        if err.filename2 is not None:
            name = f"{name} -> {os.fsdecode(err.filename2)}"
        return name
    if err.errno in FILE_ERRNOS:
        return _file_in_traceback(err.__traceback__)
    return None


def _file_in_traceback(tb: TracebackType | None) -> str | None:
    """The open file, or else the path, nearest to where the error was raised."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        values = list(frame.f_locals.values())
        for value in values:
            name = getattr(value, "name", None) if isinstance(value, io.IOBase) else None
            if isinstance(name, str):
                return name
        for value in values:
            if isinstance(value, PurePath):
                return str(value)
    return None
