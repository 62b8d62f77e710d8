"""The one shape of every framer in peripherals/wire: bytes in with their arrival time, events out.

Drivers and emulators read every device alike; each device's framing rules stay in its module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

F = TypeVar("F")

# Printable ASCII (0x20..0x7E), the text of every framed protocol here: one pattern, so a field
# or a run of a frame is checked in C rather than byte by byte.
PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]*")


def printable(data: bytes) -> bool:
    """Whether every byte of `data` is printable ASCII (0x20..0x7E)."""
    return PRINTABLE_RUN.fullmatch(data) is not None


@dataclass(frozen=True)
class FrameEvent(Generic[F]):
    """One thing found in the stream: a good frame, a control byte between frames, or an error.

    Exactly one of `frame`, `control` and `error` is set.
    """

    frame: F | None = None  # a whole frame that passed every check of its protocol
    control: int | None = None  # a byte that means something on its own (ACK, NAK...)
    error: str | None = None  # why bytes that began a frame are not one: never act on them
    nak: bool = False  # with `error`: the receiver answers NAK (a damaged frame, not noise)


class Framer(Protocol[F]):
    """Turns a byte stream, split anywhere, into events; holds at most one unfinished frame."""

    def feed(self, data: bytes, now: float) -> list[FrameEvent[F]]:
        """The events `data` completes. `data` arrived at `now` (seconds, any monotonic clock),
        which starts the wait for the next byte of an unfinished frame."""

    def expire(self, now: float) -> list[FrameEvent[F]]:
        """Give up an unfinished frame whose next byte is overdue at `now`."""

    def reset(self) -> None:
        """Forget an unfinished frame."""
