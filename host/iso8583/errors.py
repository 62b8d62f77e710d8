"""The ISO 8583 errors of both sides: a message that cannot be used, and a MAC that fails."""

from __future__ import annotations


class Iso8583Error(ValueError):
    """An ISO 8583 message could not be used."""


class MessageFormatError(Iso8583Error):
    """Bytes that are not a well-formed message of the field table (or a bad field table)."""


class MacError(Iso8583Error):
    """The message carries no MAC, or a MAC that does not match the terminal's key."""
