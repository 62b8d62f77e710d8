"""The link backends by name: pty (OS pseudo-terminal), socket (TCP on 127.0.0.1), sim (in-process)
and inline (in-process, the device answering in the driver's thread: see LinkRunner).

open_endpoint picks one; a sim or inline link takes the device's name, or the name with a number.
"""

from __future__ import annotations

import itertools

from peripherals.links.endpoint import Endpoint, LinkInUse, PtyEndpoint
from peripherals.links.sim_endpoint import SimEndpoint
from peripherals.links.socket_endpoint import SocketEndpoint

BACKENDS: tuple[str, ...] = ("pty", "socket", "sim", "inline")


class UnknownBackend(ValueError):
    """A link backend name that is not one of BACKENDS."""


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UnknownBackend(f"unknown link backend {backend!r}; valid: {', '.join(BACKENDS)}")
    return backend


def open_endpoint(backend: str, name: str) -> Endpoint:
    """A new endpoint of `backend` for the device called `name`."""
    check_backend(backend)
    if backend == "pty":
        return PtyEndpoint()
    if backend == "socket":
        return SocketEndpoint()
    for n in itertools.count(1):
        try:
            return SimEndpoint(name if n == 1 else f"{name}-{n}", inline=backend == "inline")
        except LinkInUse:
            continue
    raise AssertionError("unreachable")  # pragma: no cover
