"""Random bytes fed straight into the PIN pad emulator: it answers only with ACK, NAK or frames.

No link: the emulator's output goes to a buffer, and every frame in it must decode as a reply.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from peripherals.pin_pad import PinPadEmulator
from peripherals.wire import pin_pad as wire

# The pin_pad section of config/atm_profiles/default.yaml.
SECTION: dict[str, Any] = {
    "tmk": "0123456789ABCDEFFEDCBA9876543210",
    "pin_key_tdes": "89ABCDEF0123456776543210FEDCBA98",
    "pin_key_aes": "00112233445566778899AABBCCDDEEFF",
    "pin_block_format": 0,
    "dukpt": None,
}


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=80), max_size=6))
def test_random_bytes_only_ever_get_ack_nak_or_frames_back(chunks: list[bytes]) -> None:
    emulator = PinPadEmulator.from_config(SECTION)
    out = bytearray()
    emulator.attach(out.extend)
    for chunk in chunks:
        emulator.receive(chunk)
    emulator.tick(emulator.clock() + 1.0)
    events = wire.FrameDecoder().feed(bytes(out), 0.0)
    assert not [event for event in events if event.error is not None]
    for event in events:
        if event.frame is not None:
            wire.decode_reply(event.frame)  # every frame the pad sends is a valid reply
