"""pyserial URL handler for `sim://NAME`: a driver's port on an in-process emulator link.

serial.serial_for_url finds it once sim_endpoint.register_url_handler() has run.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from peripherals.links.endpoint import LinkClosed
from peripherals.links.registry import LIVE
from peripherals.links.sim_endpoint import SCHEME, SimEndpoint, sim_url


class Serial(SerialBase):  # pyserial looks for a handler's port class by this name
    """The driver's end of a SimEndpoint; line settings are accepted and ignored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._endpoint: SimEndpoint | None = None
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        if self.is_open:
            raise SerialException("Port is already open.")
        if self.port is None:
            raise SerialException("Port must be configured before it can be used.")
        url = self._url(str(self.port))
        endpoint = LIVE.find("endpoint", url)
        if not isinstance(endpoint, SimEndpoint):
            live = sorted(e.name for e in LIVE.entries("endpoint") if e.name.startswith("sim://"))
            raise SerialException(
                f"{url}: no emulated device serves that name"
                f" (live: {', '.join(live) if live else 'none'})"
            )
        try:
            endpoint.connect(self)
        except LinkClosed as err:
            raise SerialException(str(err)) from err
        self._endpoint = endpoint
        self._reconfigure_port()
        self.is_open = True
        LIVE.add("port", url, self)

    def close(self) -> None:
        # io.IOBase.__del__ closes the port again when it is collected; the garbage collector may
        # run that while this thread holds the registry's lock, so a closed port must not take it.
        if not self.is_open and self._endpoint is None:
            return
        if self._endpoint is not None:
            self._endpoint.disconnect(self)
            self._endpoint = None
        LIVE.remove(self)
        self.is_open = False

    @staticmethod
    def _url(port: str) -> str:
        parts = urllib.parse.urlsplit(port)
        name = parts.netloc + parts.path
        if parts.scheme.lower() != SCHEME or not name:
            raise SerialException(f"expected a URL like sim://NAME, got {port!r}")
        return sim_url(name)

    def _reconfigure_port(self) -> None:
        baud = self.baudrate
        if not isinstance(baud, int) or not 0 < baud < 2**32:
            raise ValueError(f"invalid baudrate: {baud!r}")

    def _live(self) -> SimEndpoint:
        if not self.is_open or self._endpoint is None:
            raise PortNotOpenError()
        return self._endpoint

    @property
    def in_waiting(self) -> int:
        try:
            return self._live().driver_waiting()
        except LinkClosed as err:
            raise SerialException(str(err)) from err

    def read(self, size: int = 1) -> bytes:
        endpoint = self._live()
        timeout: float | None = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        data = bytearray()
        while len(data) < size:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                data += endpoint.driver_read(size - len(data), remaining)
            except LinkClosed as err:
                if data:
                    break
                raise SerialException(str(err)) from err
            if deadline is not None and time.monotonic() >= deadline:
                break
        return bytes(data)

    def write(self, data: Any) -> int:
        payload = bytes(data)
        try:
            self._live().driver_write(payload)
        except LinkClosed as err:
            raise SerialException(str(err)) from err
        return len(payload)

    def flush(self) -> None:
        self._live()

    def reset_input_buffer(self) -> None:
        self._live().driver_reset_input()

    def reset_output_buffer(self) -> None:
        self._live()

    @property
    def out_waiting(self) -> int:
        self._live()
        return 0

    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
