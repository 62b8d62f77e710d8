"""The PIN pad's cryptography: ISO 9564 PIN blocks, DUKPT (TDES and AES), TR-31 key blocks, KCVs.

Pure functions over bytes, built on the `cryptography` package; no I/O and no logging.
"""
