"""The log formats of config/log_format.py: JSON fields, bound ids, and the last defence that
masks card numbers and blanks PIN fields whatever a caller logs.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from config.card_numbers import mask_card_numbers
from config.log_context import (
    LogContextFilter,
    _request_id,
    bind_log_context,
    current_log_context,
    log_context,
)
from config.log_format import (
    REDACTED,
    MaskingJsonFormatter,
    MaskingTextFormatter,
    configure_logging,
    resolve_log_format,
)

PAN = "4761739001010010"


def record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("host.server", logging.INFO, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def as_json(made: logging.LogRecord) -> dict[str, Any]:
    line = MaskingJsonFormatter().format(made)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (PAN, "476173******0010"),
        ("4012345678909", "401234***8909"),  # 13 digits
        ("card 4761739001010010=30122010000000000?", "card 476173******0010=301220*******0000?"),
        ("stan 000123 rrn 123456789012 port 8583", "stan 000123 rrn 123456789012 port 8583"),
        ("4761739001010010301220", "476173************1220"),  # a card number may hide in a run
    ],
)
def test_digit_runs_of_card_length_are_masked(text: str, masked: str) -> None:
    assert mask_card_numbers(text) == masked


def test_a_json_line_has_time_level_logger_event_and_masks_the_message() -> None:
    line = as_json(record("card %s read", PAN))
    assert line["level"] == "INFO" and line["logger"] == "host.server"
    assert line["event"] == "card 476173******0010 read"
    assert line["time"].endswith("Z") and "T" in line["time"]


def test_pin_and_track_fields_are_blanked_and_numbers_and_bytes_masked() -> None:
    line = as_json(
        record("x", pin="1234", pin_block="0412AC89ABCDEF67", track2="x", pan=int(PAN), raw=b"\1")
    )
    assert line["pin"] == line["pin_block"] == line["track2"] == line["raw"] == REDACTED
    assert line["pan"] == "476173******0010"


def test_an_exception_text_is_masked_too() -> None:
    try:
        raise ValueError(f"no card {PAN}")
    except ValueError:
        made = record("failed")
        made.exc_info = sys.exc_info()
    assert PAN not in MaskingJsonFormatter().format(made)
    assert PAN not in MaskingTextFormatter().format(made)


def test_bound_ids_reach_both_formats() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingTextFormatter())
    handler.addFilter(LogContextFilter())
    logger = logging.getLogger("test.log_format.ids")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with log_context(terminal_id="ATM00007"):
            logger.warning("card %s jammed", PAN)
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "WARNING test.log_format.ids: card 476173******0010 jammed [terminal_id=ATM00007]",
        "WARNING test.log_format.ids: after",
    ]


def test_an_unknown_id_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log id 'pan'"):
        bind_log_context(pan=PAN)
    assert current_log_context() == {}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_log_format("auto", _Tty()) == "text"
    assert resolve_log_format("auto", io.StringIO()) == "json"
    assert resolve_log_format("text", io.StringIO()) == "text"


@contextlib.contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without its handlers (pytest's own) for a block; put back after."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield root
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_configuring_twice_leaves_one_handler() -> None:
    stream = io.StringIO()
    with bare_root() as root:
        assert configure_logging("INFO", "text", stream=stream) == "text"
        assert configure_logging("DEBUG", "json", stream=stream) == "json"
        logging.getLogger("test.log_format").debug("one line")
        assert len(root.handlers) == 1
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["one line"]


def test_a_test_runners_handler_is_left_alone() -> None:
    capture = logging.StreamHandler(io.StringIO())
    with bare_root() as root:
        root.addHandler(capture)
        configure_logging("INFO", "json", stream=io.StringIO())
        assert root.handlers == [capture]


def test_request_ids_are_never_mistaken_for_card_numbers() -> None:
    # About 1 random hex id in 50 holds 13+ digits in a row; masked, it could not be found again.
    made = [_request_id({"headers": []}) for _ in range(2000)]
    assert all(mask_card_numbers(request_id) == request_id for request_id in made)
    sent = {"headers": [(b"x-request-id", b"4761739001010010")]}
    assert _request_id(sent) != "4761739001010010"
    assert _request_id({"headers": [(b"x-request-id", b"order-42")]}) == "order-42"
