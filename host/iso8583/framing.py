"""The bank link's framing: a two-byte big-endian length before each message, and a decoder
that cuts a TCP byte stream back into messages."""

from __future__ import annotations

import struct

from host.iso8583.errors import MessageFormatError
from host.iso8583.table import LENGTH_PREFIX, field_table

# --- framing -------------------------------------------------------------------------------


def frame(body: bytes) -> bytes:
    """Prefix a message with its length, 2 bytes big-endian."""
    if not 0 < len(body) <= 0xFFFF:
        raise MessageFormatError(f"a message of {len(body)} bytes cannot be framed")
    return struct.pack(">H", len(body)) + body


class FrameDecoder:
    """Turns a byte stream into message bodies; a bad length prefix is a MessageFormatError.

    There is no way to resynchronise inside a length-prefixed stream, so after an error the
    caller closes the connection.
    """

    def __init__(self, max_message_bytes: int | None = None) -> None:
        self.max_message_bytes = max_message_bytes or field_table().max_message_bytes
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole frame."""
        return len(self._buffer)

    def describe_pending(self) -> str:
        """What a cut-off frame held, for a log line."""
        if len(self._buffer) < LENGTH_PREFIX:
            return f"{len(self._buffer)} byte of the length prefix"
        (length,) = struct.unpack_from(">H", self._buffer)
        return f"{len(self._buffer) - LENGTH_PREFIX} of {length} message bytes"

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        bodies: list[bytes] = []
        while len(self._buffer) >= LENGTH_PREFIX:
            (length,) = struct.unpack_from(">H", self._buffer)
            if length == 0 or length > self.max_message_bytes:
                prefix = self._buffer[:LENGTH_PREFIX].hex()
                self._buffer.clear()
                raise MessageFormatError(
                    f"length prefix {prefix} says {length} bytes "
                    f"(accepted: 1..{self.max_message_bytes})"
                )
            if len(self._buffer) < LENGTH_PREFIX + length:
                break
            bodies.append(bytes(self._buffer[LENGTH_PREFIX : LENGTH_PREFIX + length]))
            del self._buffer[: LENGTH_PREFIX + length]
        return bodies
