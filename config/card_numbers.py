"""Card numbers as every part sees them: the Luhn check and the 6+4 mask that logs, journals
and screens show instead of a full number."""

from __future__ import annotations

import re

# A card number is 13 to 19 digits; a longer run may hold one beside other digits
# (a number and its expiry, say), so it is masked whole as well.
_DIGIT_RUN = re.compile(r"\d{13,}")


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check of a card number given as ASCII digits."""
    if not number.isdigit() or not number.isascii():
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def luhn_check_digit(body: str) -> str:
    """The digit that makes `body` + digit pass the Luhn check."""
    return next(digit for digit in "0123456789" if luhn_valid(body + digit))


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits, the rest as '*' (476173******0010); 10 digits or fewer are
    all masked, since 6 + 4 would show the whole number."""
    if len(pan) <= 10:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def mask_card_numbers(text: str) -> str:
    """Every run of 13 or more digits in `text` masked like a card number (first 6, last 4): the
    last defence of log lines and journal entries, whatever put the number there."""
    return _DIGIT_RUN.sub(lambda m: mask_pan(m[0]), text)
