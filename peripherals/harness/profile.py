"""The ATM profile: terminal id, one config section per emulated device with its link, host.

Loaded from YAML and checked at once; every error names the file, the line, the key and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from config.data_files import DataFile, DataFileError, Key, read_data_file
from peripherals.links.backends import BACKENDS

DEVICE_NAMES: tuple[str, ...] = ("card_reader", "pin_pad", "cash_dispenser", "receipt_printer")

# Keys of a device section that name files; they are resolved before the device sees them.
PATH_KEYS: Mapping[str, tuple[str, ...]] = {
    "card_reader": ("wallet",),
    "cash_dispenser": ("cassettes",),
}

# The folder that holds the `config` and `peripherals` packages: the repository root when run from
# a checkout, site-packages when installed.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROFILE = PROJECT_ROOT / "config" / "atm_profiles" / "default.yaml"

_TOP_KEYS = frozenset({"version", "terminal_id", "devices", "host", "state_dir"})
_LINK_KEYS = frozenset({"backend", "baud", "line_timing"})
_HOST_KEYS = frozenset({"address", "port", "mac_key"})
_TERMINAL_ID = re.compile(r"[A-Za-z0-9]{8}")
_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")


@dataclass(frozen=True)
class LinkSettings:
    backend: str = "pty"
    baud: int = 9600
    line_timing: bool = False


@dataclass(frozen=True)
class DeviceSection:
    """What one device's from_config receives (`settings`), and the link it sits on."""

    name: str
    settings: Mapping[str, Any]
    link: LinkSettings = LinkSettings()
    line: int | None = None  # of the section in the profile file, for the device's own errors


@dataclass(frozen=True)
class HostSettings:
    address: str
    port: int
    mac_key: str = field(repr=False)


@dataclass(frozen=True)
class AtmProfile:
    source: Path
    terminal_id: str
    devices: Mapping[str, DeviceSection]
    host: HostSettings | None = None
    state_dir: Path | None = None

    def with_backend(self, backend: str) -> AtmProfile:
        """The same profile with every device on `backend` (baud and timing kept)."""
        if backend not in BACKENDS:
            raise DataFileError(self.source, None, f"link.backend: {_one_of(backend, BACKENDS)}")
        devices = {
            name: DeviceSection(
                name,
                section.settings,
                LinkSettings(backend, section.link.baud, section.link.line_timing),
                section.line,
            )
            for name, section in self.devices.items()
        }
        return AtmProfile(
            self.source, self.terminal_id, MappingProxyType(devices), self.host, self.state_dir
        )


def _one_of(value: object, choices: tuple[str, ...]) -> str:
    return f"{value!r} is not one of {', '.join(choices)}"


class _Checker:
    """Reads one parsed YAML document, raising DataFileError at the first problem."""

    def __init__(self, file: DataFile) -> None:
        self.file = file
        self.source = Path(file.path)

    def fail(self, keys: tuple[Key, ...], reason: str) -> DataFileError:
        return self.file.error(keys, reason)

    def mapping(
        self, value: object, keys: tuple[Key, ...], known: frozenset[str] | None = None
    ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(keys, f"expected a mapping, got {type(value).__name__}")
        for name in value:
            if not isinstance(name, str):
                raise self.fail(keys, f"key {name!r} is not a string")
        if known is not None:
            unknown = sorted(set(value) - known)
            if unknown:
                raise self.fail(
                    (*keys, unknown[0]), f"unknown key; known: {', '.join(sorted(known))}"
                )
        return dict(value)

    def integer(self, value: object, keys: tuple[Key, ...], low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(keys, f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(keys, f"{value} is not in {low}..{high}")
        return value

    def string(
        self, value: object, keys: tuple[Key, ...], pattern: re.Pattern[str], what: str
    ) -> str:
        if not isinstance(value, str):
            raise self.fail(keys, f"expected {what} as a quoted string, got {value!r}")
        if not pattern.fullmatch(value):
            raise self.fail(keys, f"expected {what}, got {value!r}")
        return value

    def path(self, value: object, keys: tuple[Key, ...]) -> Path:
        if not isinstance(value, str) or not value:
            raise self.fail(keys, f"expected a file path, got {value!r}")
        given = Path(value).expanduser()
        if given.is_absolute():
            tried = [given]
        else:
            tried = [self.source.parent / given, PROJECT_ROOT / given]
        for candidate in tried:
            if candidate.exists():
                return candidate.resolve()
        raise self.fail(keys, f"file not found (tried {', '.join(str(p) for p in tried)})")

    def link(self, value: object, keys: tuple[Key, ...]) -> LinkSettings:
        data = self.mapping(value, keys, _LINK_KEYS)
        backend = data.get("backend", "pty")
        if backend not in BACKENDS:
            raise self.fail((*keys, "backend"), _one_of(backend, BACKENDS))
        baud = self.integer(data.get("baud", 9600), (*keys, "baud"), 50, 4_000_000)
        timing = data.get("line_timing", False)
        if not isinstance(timing, bool):
            raise self.fail((*keys, "line_timing"), f"expected true or false, got {timing!r}")
        return LinkSettings(str(backend), baud, timing)

    def device(self, name: str, value: object) -> DeviceSection:
        keys = ("devices", name)
        data = self.mapping({} if value is None else value, keys)
        link = self.link(data.pop("link", None) or {}, (*keys, "link"))
        for path_key in PATH_KEYS.get(name, ()):
            if path_key in data:
                data[path_key] = str(self.path(data[path_key], (*keys, path_key)))
        return DeviceSection(name, MappingProxyType(data), link, self.file.line(keys))

    def host(self, value: object) -> HostSettings:
        data = self.mapping(value, ("host",), _HOST_KEYS)
        for required in sorted(_HOST_KEYS):
            if required not in data:
                raise self.fail(("host", required), "missing")
        address = data["address"]
        if not isinstance(address, str) or not address.strip():
            raise self.fail(
                ("host", "address"), f"expected a host name or IP address, got {address!r}"
            )
        port = self.integer(data["port"], ("host", "port"), 1, 65535)
        mac_key = self.string(
            data["mac_key"], ("host", "mac_key"), _HEX32, "32 hex digits (AES-128)"
        )
        return HostSettings(address, port, mac_key)

    def profile(self) -> AtmProfile:
        data = self.mapping(self.file.data, (), _TOP_KEYS)
        if "terminal_id" not in data:
            raise self.fail(("terminal_id",), "missing")
        terminal_id = self.string(
            data["terminal_id"], ("terminal_id",), _TERMINAL_ID, "8 letters or digits"
        )
        if "devices" not in data:
            raise self.fail(("devices",), "missing")
        devices_raw = self.mapping(data["devices"], ("devices",), frozenset(DEVICE_NAMES))
        if not devices_raw:
            raise self.fail(
                ("devices",), f"no devices; give one or more of {', '.join(DEVICE_NAMES)}"
            )
        devices = {name: self.device(name, devices_raw[name]) for name in devices_raw}
        host = self.host(data["host"]) if data.get("host") is not None else None
        state_dir = None
        if data.get("state_dir") is not None:
            raw = data["state_dir"]
            if not isinstance(raw, str) or not raw:
                raise self.fail(("state_dir",), f"expected a directory path, got {raw!r}")
            state_dir = Path(raw).expanduser()
            if not state_dir.is_absolute():
                state_dir = self.source.parent / state_dir
        return AtmProfile(self.source, terminal_id, MappingProxyType(devices), host, state_dir)


def parse_profile(document: object, source: Path | str = "<profile>") -> AtmProfile:
    """Check a document built in code (relative paths resolve against `source`'s folder)."""
    return _Checker(DataFile(str(source), document)).profile()


def load_profile(path: Path | str) -> AtmProfile:
    """Read and check an ATM profile YAML file; DataFileError names the file and the line."""
    return _Checker(read_data_file(Path(path).resolve())).profile()
