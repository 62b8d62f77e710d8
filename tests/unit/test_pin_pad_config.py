"""The PIN pad's config section: every bad section is refused, saying which key and why.

No link: PinPadEmulator.from_config alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from peripherals.pin_pad import PinPadEmulator

# The pin_pad section of config/atm_profiles/default.yaml.
BASE: dict[str, Any] = {
    "tmk": "0123456789ABCDEFFEDCBA9876543210",
    "pin_key_tdes": "89ABCDEF0123456776543210FEDCBA98",
    "pin_key_aes": "00112233445566778899AABBCCDDEEFF",
    "pin_block_format": 0,
    "dukpt": None,
}
TDES_DUKPT = {
    "scheme": "tdes",
    "bdk": "0123456789ABCDEFFEDCBA9876543210",
    "ksn": "FFFF9876543210E00000",
}


def test_bad_config_sections_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="tmk"):
        PinPadEmulator.from_config({"pin_block_format": 0})
    with pytest.raises(ValueError, match="unknown keys colour"):
        PinPadEmulator.from_config({**BASE, "colour": "red"})
    with pytest.raises(ValueError, match="pin_block_format"):
        PinPadEmulator.from_config({**BASE, "pin_block_format": 2})
    with pytest.raises(ValueError, match="format 4 cannot be used with tdes"):
        PinPadEmulator.from_config({**BASE, "pin_block_format": 4, "dukpt": TDES_DUKPT})
    with pytest.raises(ValueError, match="quoted hex"):
        PinPadEmulator.from_config({**BASE, "tmk": 123})
    both_keys = {**TDES_DUKPT, "initial_key": "6AC292FAA1315B4D858AB3A3D7D5933A"}
    with pytest.raises(ValueError, match="one of initial_key or bdk"):
        PinPadEmulator.from_config({**BASE, "dukpt": both_keys})
