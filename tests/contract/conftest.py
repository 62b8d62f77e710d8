"""A one-device bay from the default ATM profile, on the backend the test is parametrised with."""

from __future__ import annotations

from typing import Any, Protocol

import pytest
import yaml

from peripherals.emulator import Emulator
from peripherals.harness.bay import DeviceBay
from peripherals.harness.profile import DEFAULT_PROFILE, parse_profile


class OneDeviceBay(Protocol):
    def __call__(self, name: str, emulator: Emulator | None = None) -> DeviceBay: ...


@pytest.fixture
def one_device_bay(make_device_bay: Any, link_backend: str) -> OneDeviceBay:
    """bay = one_device_bay("pin_pad"): that device of the default profile on `link_backend`;
    one_device_bay("receipt_printer", emulator): that emulator instead, configured by the test."""

    def make(name: str, emulator: Emulator | None = None) -> DeviceBay:
        bay: DeviceBay
        if emulator is not None:
            bay = make_device_bay(emulators={name: emulator}, backend=link_backend)
            return bay
        document = yaml.safe_load(DEFAULT_PROFILE.read_text(encoding="utf-8"))
        document["devices"] = {name: document["devices"][name]}
        bay = make_device_bay(parse_profile(document, DEFAULT_PROFILE), backend=link_backend)
        return bay

    return make
