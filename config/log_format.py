"""How every process of the simulator writes its logs: one JSON object a line on stderr, or the
human text format; card numbers masked and PIN or track fields blanked as a last defence.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from config.card_numbers import mask_card_numbers
from config.log_context import LOG_IDS, LogContextFilter
from config.settings import LOG_FORMATS

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

# Fields named like a PIN, a PIN block or track data never show their value, whatever it is.
_SECRET_FIELD = re.compile(r"(^|_)(pin|pin_?block|track_?\d?|track_?data)$", re.IGNORECASE)
# Record attributes that are not part of a log line (uvicorn's coloured copy of the message).
_DROPPED_FIELDS = frozenset({"color_message"})


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_card_numbers(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        text = str(value)
        masked = mask_card_numbers(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {key: _field_value(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return REDACTED  # raw bytes in a log line could be a PIN block; nobody needs them there
    return mask_card_numbers(str(value))


def _field_value(key: str, value: Any) -> Any:
    return REDACTED if _SECRET_FIELD.search(key) else _masked(value)


class MaskingJsonFormatter(JsonFormatter):
    """One JSON object a line: time, level, logger, event, then terminal or request ids and
    any `extra=` fields, every value masked."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger", "message": "event"},
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = _utc_time(record)
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {
            key: _field_value(key, value)
            for key, value in log_data.items()
            if key not in _DROPPED_FIELDS and value is not None
        }

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        # Values are masked already; this catches what a json_default turned into text.
        return mask_card_numbers(super().serialize_log_record(log_data))


class MaskingTextFormatter(logging.Formatter):
    """The human format: `LEVEL logger: message [terminal_id=...]`, card numbers masked."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{name}={getattr(record, name)}" for name in LOG_IDS if hasattr(record, name)
        )
        return mask_card_numbers(f"{line} [{ids}]" if ids else line)


def _utc_time(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _ProductHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so configuring again replaces only it."""


class _CurrentStderrHandler(_ProductHandler):
    """Writes to whatever sys.stderr is at the time, so a swapped stream (a test capturing
    stderr, then closing it) is never written to after it is gone."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def resolve_log_format(requested: str, stream: TextIO) -> str:
    """'json' or 'text': 'auto' is text on an interactive terminal and JSON anywhere else."""
    if requested not in LOG_FORMATS:
        raise ValueError(f"log format {requested!r}: expected one of {', '.join(LOG_FORMATS)}")
    if requested != "auto":
        return requested
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return "text" if interactive else "json"


def configure_logging(
    level: str | int, log_format: str = "auto", *, stream: TextIO | None = None
) -> str:
    """Send every log record to stderr (or `stream`) in the chosen format; returns the format
    used. Called once per process; calling again replaces what an earlier call installed.

    Another handler already on the root logger (a test runner's capture) is left alone and
    nothing is added, as `logging.basicConfig` would do."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _ProductHandler)]
    if len(ours) < len(root.handlers):
        return resolve_log_format(log_format, stream or sys.stderr)
    for old in ours:
        root.removeHandler(old)
    chosen = resolve_log_format(log_format, stream or sys.stderr)
    handler: logging.StreamHandler[TextIO] = (
        _ProductHandler(stream) if stream is not None else _CurrentStderrHandler()
    )
    handler.setFormatter(MaskingJsonFormatter() if chosen == "json" else MaskingTextFormatter())
    handler.addFilter(LogContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in SERVER_LOGGERS:  # uvicorn's command line gives these text handlers of their own
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    # The API's own access line carries the request id; uvicorn's would repeat it without.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    return chosen
