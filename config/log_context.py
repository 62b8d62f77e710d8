"""Ids that travel with log lines (terminal, request): bound per thread or task with contextvars,
copied onto every log record by a filter, and an ASGI middleware that binds one per request.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any

from config.card_numbers import mask_card_numbers

LOG_IDS = ("terminal_id", "request_id")
access_log = logging.getLogger("api.access")
REQUEST_ID_HEADER = "x-request-id"
# A caller's id is echoed into logs and headers, so only a short, plain one is adopted.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

_bound: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("atm_sim_log_ids", default=())


def current_log_context() -> dict[str, str]:
    """The ids bound in this thread or task, e.g. {"terminal_id": "ATM00001"}."""
    return dict(_bound.get())


def bind_log_context(**ids: str) -> None:
    """Bind ids for the rest of this thread or task (a new thread starts with none)."""
    _check_names(ids)
    _bound.set(tuple({**current_log_context(), **ids}.items()))


@contextlib.contextmanager
def log_context(**ids: str) -> Iterator[None]:
    """Bind ids for the block only; what was bound before comes back after it."""
    _check_names(ids)
    token = _bound.set(tuple({**current_log_context(), **ids}.items()))
    try:
        yield
    finally:
        _bound.reset(token)


def _check_names(ids: dict[str, str]) -> None:
    unknown = sorted(set(ids) - set(LOG_IDS))
    if unknown:
        raise ValueError(f"unknown log id {unknown[0]!r}; known: {', '.join(LOG_IDS)}")


class LogContextFilter(logging.Filter):
    """Copies the bound ids onto each record; ids passed with `extra=` win."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _bound.get():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


# ----- HTTP: one request id per request ---------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestIdMiddleware:
    """Binds a request id for each HTTP request (the caller's X-Request-ID when it is a plain
    token, a new one otherwise), returns it in the X-Request-ID response header, and logs one
    access line per request with it (method, path without the query, status, milliseconds)."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 0))
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                access_log.info(
                    "%s %s -> %s (%.1f ms)",
                    scope.get("method", "?"),
                    scope.get("path", "?"),
                    status or "no answer",
                    (time.perf_counter() - started) * 1000,
                )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            text = bytes(value).decode("latin-1")
            if _ACCEPTABLE_REQUEST_ID.fullmatch(text) and _survives_masking(text):
                return text
    while True:
        # About 1 in 50 random hex ids holds 13+ digits in a row, which every log line would
        # mask as a card number: such an id could never be found in the logs again.
        made = uuid.uuid4().hex
        if _survives_masking(made):
            return made


def _survives_masking(request_id: str) -> bool:
    return mask_card_numbers(request_id) == request_id
