"""The PIN pad's DUKPT counter lives in its state_dir: a restart never reuses a key.

No link: commands go straight into the emulator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peripherals.pin_pad import PinPadEmulator
from peripherals.wire import pin_pad as wire

PAN = "4012345678909"
TDES_DUKPT = {
    "scheme": "tdes",
    "bdk": "0123456789ABCDEFFEDCBA9876543210",
    "ksn": "FFFF9876543210E00000",
}
SECTION: dict[str, Any] = {
    "tmk": "0123456789ABCDEFFEDCBA9876543210",
    "pin_key_tdes": "89ABCDEF0123456776543210FEDCBA98",
    "pin_key_aes": "00112233445566778899AABBCCDDEEFF",
    "pin_block_format": 0,
    "dukpt": TDES_DUKPT,
}


def test_dukpt_counter_is_kept_across_a_restart(tmp_path: Path) -> None:
    first = PinPadEmulator.from_config(SECTION, state_dir=tmp_path)
    sent = bytearray()
    first.attach(sent.extend)
    first.receive(wire.encode_frame(wire.encode_command(wire.StartPinEntry(PAN))))
    for key in "1234":
        first.press(key)
    first.press("enter")
    assert (tmp_path / "dukpt_ksn").read_text() == "FFFF9876543210E00001"
    second = PinPadEmulator.from_config(SECTION, state_dir=tmp_path)
    assert second.ksn == "FFFF9876543210E00001"  # the next block uses counter 2, never 1 again
    other_device = PinPadEmulator.from_config(
        {**SECTION, "dukpt": {**TDES_DUKPT, "ksn": "FFFF1111111111E00000"}}, state_dir=tmp_path
    )
    assert other_device.ksn == "FFFF1111111111E00000"
