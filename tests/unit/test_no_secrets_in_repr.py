"""What reaches a log or a test report through repr: card numbers masked, PIN blocks absent."""

from __future__ import annotations

import datetime as dt

from device.controller.ports import CardData, PinBlock
from host import iso8583 as iso
from host.messages import HostRequest, RequestKind

PAN = "4761739001010010"
BLOCK = bytes.fromhex("0412AC89ABCDEF67")


def _leaks(text: str) -> list[str]:
    found = [PAN] if PAN in text else []
    for form in (BLOCK.hex(), BLOCK.hex().upper(), repr(BLOCK)):
        if form in text:
            found.append(form)
    return found


def test_an_iso8583_message_shows_masked_card_numbers_and_no_pin_block() -> None:
    for fields in (
        {"2": PAN, "52": BLOCK, "111": BLOCK},
        {"35": iso.track2(PAN, "3012", "201"), "110": BLOCK + BLOCK},
    ):
        text = repr(iso.Message("0200", {"3": "012000", **fields}))
        assert _leaks(text) == []
        assert "476173******0010" in text and "012000" in text


def test_a_host_request_shows_a_masked_card_number_and_no_pin_block() -> None:
    request = HostRequest(
        RequestKind.WITHDRAWAL,
        "ATM00001",
        "000042",
        dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
        pan=PAN,
        pin_block=BLOCK,
        pin_block_format=0,
        new_pin_block=BLOCK,
        amount=5000,
    )
    text = repr(request)
    assert _leaks(text) == []
    assert "476173******0010" in text and "stan=000042" in text and "amount=5000" in text


def test_the_controller_session_types_mask_the_card_and_hide_the_block() -> None:
    text = repr(CardData(PAN, "3012", "201")) + repr(PinBlock(BLOCK, 0, "FFFF9876543210E00001"))
    assert _leaks(text) == []
    assert "476173******0010" in text and "FFFF9876543210E00001" in text
