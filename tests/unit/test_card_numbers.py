"""The one Luhn check and the one 6+4 mask every part uses."""

from __future__ import annotations

import pytest

from config.card_numbers import luhn_check_digit, luhn_valid, mask_pan


@pytest.mark.parametrize(
    "pan", ["4761739001010010", "4012345678909", "4111111111111111", "4000000000000002"]
)
def test_valid_card_numbers_pass_luhn(pan: str) -> None:
    assert luhn_valid(pan)
    assert luhn_check_digit(pan[:-1]) == pan[-1]


@pytest.mark.parametrize("text", ["4761739001010011", "", "4761 7390", "\u0664\u0661"])
def test_wrong_digits_and_non_digits_fail_luhn(text: str) -> None:
    assert not luhn_valid(text)


@pytest.mark.parametrize(
    ("pan", "masked"),
    [
        ("4761739001010010", "476173******0010"),
        ("4012345678909", "401234***8909"),
        ("12345678901", "123456*8901"),
        ("1234567890", "**********"),  # 6 + 4 would show the whole number
        ("", ""),
    ],
)
def test_mask_keeps_first_six_and_last_four(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked
