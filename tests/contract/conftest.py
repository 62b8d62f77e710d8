"""A one-device bay from the default ATM profile, on the backend the test is parametrised with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from peripherals.harness.bay import DeviceBay
from peripherals.harness.profile import DEFAULT_PROFILE, parse_profile

OneDeviceBay = Callable[[str], DeviceBay]


@pytest.fixture
def one_device_bay(make_device_bay: Any, link_backend: str) -> OneDeviceBay:
    """bay = one_device_bay("pin_pad"): that device of the default profile on `link_backend`."""

    def make(name: str) -> DeviceBay:
        document = yaml.safe_load(DEFAULT_PROFILE.read_text(encoding="utf-8"))
        document["devices"] = {name: document["devices"][name]}
        bay: DeviceBay = make_device_bay(
            parse_profile(document, DEFAULT_PROFILE), backend=link_backend
        )
        return bay

    return make
