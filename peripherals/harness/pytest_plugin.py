"""pytest plugin (entry point `pytest11`): fixtures for testing ATM software on emulated devices.

Fixtures: device_bay, make_device_bay, link_backend, atm_profile; an autouse leak check.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from peripherals.emulator import Emulator
from peripherals.harness.bay import DeviceBay
from peripherals.harness.profile import DEFAULT_PROFILE, AtmProfile, load_profile
from peripherals.links.backends import BACKENDS
from peripherals.links.registry import LIVE, LiveEntry, harness_threads

NO_LEAK_CHECK = "atm_sim_no_leak_check"
THREAD_GRACE_SECONDS = 1.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "atm_sim_leak_check",
        "fail a test that leaves a harness port, link or thread open (default true)",
        type="bool",
        default=True,
    )
    parser.addini(
        "atm_sim_profile",
        "ATM profile YAML for the device_bay fixture (default: config/atm_profiles/default.yaml)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{NO_LEAK_CHECK}: do not check this test for leaked harness ports and threads"
    )


def _close(entry: LiveEntry) -> None:
    resource = entry.resource
    closer = getattr(resource, "stop", None) or getattr(resource, "close", None)
    if callable(closer):
        with contextlib.suppress(Exception):
            closer()


def leaks_since(
    entries_before: set[int], threads_before: set[threading.Thread]
) -> tuple[list[LiveEntry], list[threading.Thread]]:
    """Harness resources and threads opened since the snapshot and still alive."""
    entries = [e for e in LIVE.entries() if id(e.resource) not in entries_before]
    threads = [t for t in harness_threads() if t not in threads_before]
    return entries, threads


@pytest.fixture(autouse=True)
def _atm_sim_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, every harness port, endpoint and link runner it opened must be closed."""
    enabled = bool(request.config.getini("atm_sim_leak_check"))
    if not enabled or request.node.get_closest_marker(NO_LEAK_CHECK) is not None:
        yield
        return
    entries_before = {id(e.resource) for e in LIVE.entries()}
    threads_before = set(harness_threads())
    yield
    entries, threads = leaks_since(entries_before, threads_before)
    if threads and not entries:  # a runner stopped just now may need a moment to end
        for thread in threads:
            thread.join(THREAD_GRACE_SECONDS)
    entries, threads = leaks_since(entries_before, threads_before)
    if not entries and not threads:
        return
    # Runners first: stopping one closes its endpoint too.
    entries.sort(key=lambda e: (e.kind != "runner", e.kind, e.name))
    for entry in entries:
        _close(entry)
    described = [e.describe() for e in entries]
    described += [f"thread {t.name}" for t in threads if all(e.thread is not t for e in entries)]
    pytest.fail(
        f"{request.node.nodeid} leaked harness resources: {'; '.join(described)} "
        "(stop the bay / close the port; now closed by the leak check)",
        pytrace=False,
    )


@pytest.fixture(params=BACKENDS)
def link_backend(request: pytest.FixtureRequest) -> str:
    """The link backend: "pty", "socket", "sim" or "inline" (a test using it runs once for
    each)."""
    backend: str = request.param
    return backend


@pytest.fixture
def atm_profile(request: pytest.FixtureRequest) -> AtmProfile:
    """The ATM profile of the ini option atm_sim_profile, or the default profile."""
    configured = str(request.config.getini("atm_sim_profile"))
    path = Path(request.config.rootpath, configured) if configured else DEFAULT_PROFILE
    return load_profile(path)


MakeBay = Callable[..., DeviceBay]


@pytest.fixture
def make_device_bay(tmp_path: Path) -> Iterator[MakeBay]:
    """A factory of started bays, all stopped after the test.

    make_device_bay(profile=None, backend=None, emulators=None): with `emulators` (a mapping of
    name to Emulator) the bay holds those; otherwise the devices of `profile` (default profile).
    """
    bays: list[DeviceBay] = []

    def make(
        profile: AtmProfile | Path | str | None = None,
        *,
        backend: str | None = None,
        emulators: Mapping[str, Emulator] | None = None,
        **options: Any,
    ) -> DeviceBay:
        if emulators is not None:
            bay = DeviceBay(emulators, backend=backend, **options)
        else:
            state_dir = tmp_path / f"devices-{len(bays)}"
            bay = DeviceBay.from_profile(profile, backend=backend, state_dir=state_dir, **options)
        bays.append(bay)
        return bay.start()

    yield make
    for bay in bays:
        bay.stop()


@pytest.fixture
def device_bay(
    request: pytest.FixtureRequest, atm_profile: AtmProfile, make_device_bay: MakeBay
) -> DeviceBay:
    """All devices of the profile, started, on ptys (or on `link_backend` when the test uses it).

    .card_reader / .pin_pad / .cash_dispenser / .receipt_printer are the emulators, .url(name) the
    port a driver opens, .inject / .clear / .list the faults.
    """
    backend = "pty"
    if "link_backend" in request.fixturenames:
        backend = str(request.getfixturevalue("link_backend"))
    return make_device_bay(atm_profile, backend=backend)
