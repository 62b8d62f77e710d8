"""The host's key store: keys derived from SECRET_KEY (HKDF), terminal keys sealed with AES-GCM,
and the keyed hash (HMAC-SHA256) under which card numbers are looked up.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from config.settings import Settings
from host.driver_sql import DriverTransaction
from host.iso_mapping import is_terminal_id
from host.models import Terminal

NONCE_BYTES = 12
SEAL_VERSION = b"\x01"
KEY_NAMES = ("tmk", "pin_key_tdes", "pin_key_aes", "mac_key")
# A terminal whose PIN pad runs DUKPT has its base derivation key here; others have none.
OPTIONAL_KEY_NAMES = ("dukpt_bdk_tdes", "dukpt_bdk_aes")
_KEY_LENGTHS = dict.fromkeys(KEY_NAMES + OPTIONAL_KEY_NAMES, 16)


class KeyStoreError(RuntimeError):
    """A sealed key cannot be opened (another SECRET_KEY, or damaged data)."""


class KeyFormatError(KeyStoreError, ValueError):
    """A key given in hex has the wrong length or characters."""


def derive_key(settings: Settings, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose, derived from SECRET_KEY; each purpose gets an unrelated key."""
    return _derived(settings.secret_key, purpose, length)


# Every request needs three or four derived keys; HKDF once per secret and purpose, not per use.
@functools.lru_cache(maxsize=64)
def _derived(secret_key: str, purpose: str, length: int) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=b"atm-sim host key store",
        info=purpose.encode("ascii"),
    )
    return hkdf.derive(secret_key.encode("utf-8"))


def pan_digest(settings: Settings, pan: str) -> bytes:
    """The keyed hash a card number is stored and looked up under."""
    return hmac.new(
        derive_key(settings, "pan-lookup"), pan.encode("ascii"), hashlib.sha256
    ).digest()


def _aad(terminal_id: str, name: str) -> bytes:
    # Binding the ciphertext to its terminal and role stops a sealed key being swapped in a row.
    return f"{terminal_id}/{name}".encode("ascii")


def seal_key(settings: Settings, terminal_id: str, name: str, key: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    aead = AESGCM(derive_key(settings, "terminal-keys"))
    return SEAL_VERSION + nonce + aead.encrypt(nonce, key, _aad(terminal_id, name))


def open_key(settings: Settings, terminal_id: str, name: str, sealed: bytes) -> bytes:
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != SEAL_VERSION:
        raise KeyStoreError(f"terminal {terminal_id}: sealed {name} is damaged")
    nonce = sealed[1 : 1 + NONCE_BYTES]
    aead = AESGCM(derive_key(settings, "terminal-keys"))
    try:
        return aead.decrypt(nonce, sealed[1 + NONCE_BYTES :], _aad(terminal_id, name))
    except InvalidTag as err:
        raise KeyStoreError(
            f"terminal {terminal_id}: cannot open {name} (was SECRET_KEY changed?)"
        ) from err


def key_from_hex(name: str, text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError as err:
        raise KeyFormatError(f"{name}: expected hex digits") from err
    if len(key) != _KEY_LENGTHS[name]:
        raise KeyFormatError(f"{name}: expected {2 * _KEY_LENGTHS[name]} hex digits")
    return key


@dataclass(frozen=True)
class TerminalKeys:
    tmk: bytes
    pin_key_tdes: bytes
    pin_key_aes: bytes
    mac_key: bytes
    dukpt_bdk_tdes: bytes | None = None
    dukpt_bdk_aes: bytes | None = None

    def __repr__(self) -> str:  # keys never reach a log through repr
        return "TerminalKeys(<hidden>)"


def sealed_columns(
    settings: Settings, terminal_id: str, keys: TerminalKeys
) -> dict[str, bytes | None]:
    """The Terminal column values that hold these keys (None for a BDK the terminal lacks)."""
    columns: dict[str, bytes | None] = {}
    for name in KEY_NAMES + OPTIONAL_KEY_NAMES:
        key: bytes | None = getattr(keys, name)
        columns[f"{name}_sealed"] = (
            None if key is None else seal_key(settings, terminal_id, name, key)
        )
    return columns


def open_terminal_keys(settings: Settings, terminal: Terminal) -> TerminalKeys:
    opened: dict[str, bytes | None] = {}
    for name in KEY_NAMES + OPTIONAL_KEY_NAMES:
        sealed: bytes | None = getattr(terminal, f"{name}_sealed")
        opened[name] = (
            None if sealed is None else open_key(settings, terminal.terminal_id, name, sealed)
        )
    return TerminalKeys(**opened)  # type: ignore[arg-type]


def mac_key_lookup(engine: sa.Engine, settings: Settings) -> Callable[[str], bytes | None]:
    """For the ISO 8583 server: a terminal's MAC key, or None for a terminal the bank lacks."""

    # One statement outside a transaction (no BEGIN and ROLLBACK around a single read), on the
    # driver: this runs before every request the host answers.
    reader = engine.execution_options(isolation_level="AUTOCOMMIT")
    statement = "SELECT mac_key_sealed FROM terminals WHERE terminal_id = %(terminal_id)s"

    def lookup(terminal_id: str) -> bytes | None:
        if not is_terminal_id(terminal_id):
            return None  # a NUL or a stray byte must never reach the database driver
        with reader.connect() as conn:
            sealed = DriverTransaction(conn).scalar(statement, {"terminal_id": terminal_id})
        if sealed is None:
            return None
        return open_key(settings, terminal_id, "mac_key", sealed)

    return lookup
