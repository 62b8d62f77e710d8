"""The PIN pad's cryptography: ISO 9564 PIN blocks, DUKPT (TDES and AES), TR-31 key blocks, KCVs.

Pure functions over bytes, built on the `cryptography` package; no I/O and no logging.
"""


class DukptError(ValueError):
    """A DUKPT key or KSN of the wrong length, or a transaction counter past its end (TDES and
    AES alike)."""
