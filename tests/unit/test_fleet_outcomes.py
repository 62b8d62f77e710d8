"""A fleet session's outcome, read from the journal entries it wrote."""

from __future__ import annotations

from typing import Any

import pytest

from device.sim.fleet.robot_customer import classify

AUTHORISED = [("card_read", {}), ("authorisation", {"code": "00"}), ("authorised", {})]


@pytest.mark.parametrize(
    ("events", "outcome"),
    [
        ([*AUTHORISED, ("presented", {}), ("taken", {}), ("completion_queued", {})], "approved"),
        ([*AUTHORISED, ("notes_counted", {}), ("reversal_queued", {})], "reversed"),
        ([*AUTHORISED, ("presented", {}), ("settlement_deferred", {})], "settlement deferred"),
        ([*AUTHORISED, ("presented", {})], "unsettled"),
        ([*AUTHORISED, ("suspect", {})], "suspect"),
        ([("card_read", {}), ("pin_verified", {"code": "55"})], "declined 55"),
        ([("card_read", {}), ("host_unavailable", {})], "host unavailable"),
        ([("card_read", {})], "no transaction"),
        ([], "not served"),
    ],
)
def test_outcomes(events: list[tuple[str, dict[str, Any]]], outcome: str) -> None:
    assert classify(events) == outcome
