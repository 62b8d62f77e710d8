"""TDES DUKPT (ANSI X9.24-1): initial key, transaction keys, the PIN variant and the next KSN.

A KSN is 10 bytes: key set ID and device ID (59 bits) and a 21-bit transaction counter.
"""

from __future__ import annotations

from peripherals.pin_crypto import DukptError, ciphers

KSN_BYTES = 10
COUNTER_BITS = 21
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_ONE_BITS = 10  # a device uses only counters with at most ten bits set
KEY_MASK = bytes.fromhex("C0C0C0C000000000C0C0C0C000000000")
PIN_VARIANT = bytes.fromhex("00000000000000FF00000000000000FF")


def _check(bdk_or_key: bytes, ksn: bytes) -> None:
    if len(bdk_or_key) != 16:
        raise DukptError(f"TDES DUKPT keys are 16 bytes, not {len(bdk_or_key)}")
    if len(ksn) != KSN_BYTES:
        raise DukptError(f"a TDES DUKPT KSN is {KSN_BYTES} bytes, not {len(ksn)}")


def counter(ksn: bytes) -> int:
    return int.from_bytes(ksn[-3:], "big") & COUNTER_MASK


def with_counter(ksn: bytes, value: int) -> bytes:
    base = int.from_bytes(ksn, "big") & ~COUNTER_MASK
    return (base | value).to_bytes(KSN_BYTES, "big")


def initial_key(bdk: bytes, ksn: bytes) -> bytes:
    """The IPEK: the BDK enciphers the KSN's top 8 bytes (counter zeroed), plain and masked."""
    _check(bdk, ksn)
    top = with_counter(ksn, 0)[:8]
    left = ciphers.tdes_ecb_encrypt(bdk, top)
    right = ciphers.tdes_ecb_encrypt(ciphers.xor(bdk, KEY_MASK), top)
    return left + right


def _one_way(key: bytes, register: bytes) -> bytes:
    """The non-reversible key generation process: a new 16-byte key from `key` and `register`."""

    def half(k: bytes) -> bytes:
        k_left, k_right = k[:8], k[8:]
        return ciphers.xor(
            ciphers.tdes_ecb_encrypt(k_left, ciphers.xor(register, k_right)), k_right
        )

    return half(ciphers.xor(key, KEY_MASK)) + half(key)


def transaction_key(ipek: bytes, ksn: bytes) -> bytes:
    """The key of the KSN's counter: one one-way step per set counter bit, highest first."""
    _check(ipek, ksn)
    register = int.from_bytes(ksn[2:], "big") & ~COUNTER_MASK
    count = counter(ksn)
    key = ipek
    for bit in reversed(range(COUNTER_BITS)):
        if count & (1 << bit):
            register |= 1 << bit
            key = _one_way(key, register.to_bytes(8, "big"))
    return key


def pin_key(key: bytes) -> bytes:
    """The PIN encryption variant of a transaction key."""
    return ciphers.xor(key, PIN_VARIANT)


def derive_pin_key(bdk: bytes, ksn: bytes) -> bytes:
    """The host's view: BDK and KSN to the key that enciphered that transaction's PIN block."""
    return pin_key(transaction_key(initial_key(bdk, ksn), ksn))


def next_ksn(ksn: bytes) -> bytes:
    """The next KSN a device uses: counters with more than ten bits set are skipped."""
    value = counter(ksn) + 1
    while value <= COUNTER_MASK and bin(value).count("1") > MAX_ONE_BITS:
        # adding the lowest set bit clears a run of ones, the fastest way past them
        value += value & -value
    if value > COUNTER_MASK:
        raise DukptError("the DUKPT transaction counter is exhausted")
    return with_counter(ksn, value)
