"""Helpers for the HTTP service tests: operators of each role, signing in, a movable clock for
token and lockout timing, and polling a job until it ends.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from config.settings import Settings
from host.api.operators import create_operator

PASSWORDS = {
    "admin": "admin-password-1",
    "operator": "operator-password-1",
    "viewer": "viewer-password-1",
}
FULL_PANS = ("4761739001010010", "4111111111111111", "4012345678909")
SEEDED_PINS = ("1234", "4321", "0852")


def add_operators(engine: sa.Engine, settings: Settings) -> None:
    """One operator per role, each named after its role."""
    for role, password in PASSWORDS.items():
        create_operator(engine, settings, role, role, password)


def sign_in(client: TestClient, role: str) -> dict[str, str]:
    """The Authorization header of a fresh token of the operator named `role`."""
    response = client.post("/auth/token", json={"name": role, "password": PASSWORDS[role]})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


class MovableClock:
    """The operators' clock, moved by hand (the service reads it for tokens and lockouts)."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def wait_for_job(
    client: TestClient, url: str, headers: dict[str, str], seconds: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        job: dict[str, Any] = client.get(url, headers=headers).json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)
