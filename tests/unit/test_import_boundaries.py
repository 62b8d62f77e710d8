"""The import boundaries of ARCHITECTURE.md, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from host import iso8583` imports host.iso8583, not all of host
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violations(package: str, allowed: callable) -> list[str]:  # type: ignore[valid-type]
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if (
                top in {"device", "peripherals", "host"}
                and top != package
                and not allowed(path, name)
            ):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_peripherals_is_the_hardware_and_imports_no_device_or_host() -> None:
    assert violations("peripherals", lambda path, name: False) == []


def test_host_is_the_bank_and_imports_no_device_or_peripherals() -> None:
    assert violations("host", lambda path, name: False) == []


def in_simulator(path: Path) -> bool:
    return path.relative_to(ROOT).parts[:2] == ("device", "sim")


def test_the_atm_proper_uses_only_wire_specs_of_devices_and_bank_link() -> None:
    def allowed(path: Path, name: str) -> bool:
        return in_simulator(path) or f"{name}.".startswith(("peripherals.wire.", "host.iso8583."))

    assert violations("device", allowed) == []


def test_the_atm_proper_imports_nothing_from_the_simulator() -> None:
    found = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "device").rglob("*.py"))
        if not in_simulator(path)
        for name in imported_modules(path)
        if f"{name}.".startswith("device.sim.")
    ]
    assert found == []
