"""Operator sign-in on the HTTP service against the real bank database: tokens, roles, idle
expiry, lockout after MAX_FAILED_PIN_ATTEMPTS, the sign-in rate limit, and the create-operator
command.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator

import jwt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from config.settings import Settings
from device.sim.api.app import create_app
from device.sim.cli import main
from host.api.operators import check_password
from host.api.rate_limit import SIGN_IN_ATTEMPTS
from host.models import Operator
from tests.api_support import PASSWORDS, MovableClock, add_operators, sign_in


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def client(
    bank_engine: sa.Engine, bank_settings: Settings, clock: MovableClock
) -> Iterator[TestClient]:
    add_operators(bank_engine, bank_settings)
    app = create_app(bank_settings, engine=bank_engine)
    app.state.auth.clock = clock
    with TestClient(app) as test_client:
        yield test_client


def test_a_token_reads_until_its_operator_signs_out(client: TestClient) -> None:
    headers = sign_in(client, "viewer")
    me = client.get("/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json() == {"name": "viewer", "role": "viewer"}
    assert client.get("/bank/accounts/10000001", headers=headers).status_code == 200
    assert client.delete("/auth/token", headers=headers).status_code == 204
    after = client.get("/bank/accounts/10000001", headers=headers)
    assert after.status_code == 401
    assert "sign in again" in after.json()["detail"]


def test_missing_forged_and_foreign_tokens_are_refused_with_401(
    client: TestClient, bank_settings: Settings
) -> None:
    real = sign_in(client, "admin")["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(real, options={"verify_signature": False})
    foreign = jwt.encode(claims, "another-secret-key-0123456789abcdef", algorithm="HS256")
    header, payload, signature = real.split(".")
    tampered = jwt.encode({**claims, "sub": "viewer"}, "x" * 32, algorithm="HS256")
    for headers in (
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {foreign}"},
        {"Authorization": f"Bearer {header}.{tampered.split('.')[1]}.{signature}"},
        {"Authorization": f"Bearer {header}.{payload}."},
    ):
        response = client.get("/bank/customers", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert "sign in" in response.json()["detail"]


def test_roles_viewer_reads_operator_drives_the_lab_admin_changes_cards(
    client: TestClient,
) -> None:
    viewer, operator, admin = (sign_in(client, role) for role in ("viewer", "operator", "admin"))
    assert client.get("/bank/cards", headers=viewer).status_code == 200
    refused = client.post("/bank/cards/1/block", headers=viewer)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this needs the admin role; viewer has viewer"
    assert client.post("/bank/cards/1/block", headers=operator).status_code == 403
    assert client.post("/lab/atms", json={"profile": "default"}, headers=viewer).status_code == 403
    assert client.delete("/lab/atms/ATM00001", headers=viewer).status_code == 403
    assert client.delete("/lab/atms/ATM00001", headers=operator).status_code == 404
    blocked = client.post("/bank/cards/1/block", headers=admin)
    assert blocked.status_code == 200
    assert blocked.json()["status"] == "blocked"


def test_a_token_ends_after_the_idle_timeout_and_use_keeps_it_alive(
    client: TestClient, clock: MovableClock, bank_settings: Settings
) -> None:
    timeout = bank_settings.session_timeout_seconds
    headers = sign_in(client, "viewer")
    for _ in range(3):  # used within the timeout each time: longer than one timeout in all
        clock.advance(timeout * 0.8)
        assert client.get("/auth/me", headers=headers).status_code == 200
    clock.advance(timeout + 1)
    expired = client.get("/auth/me", headers=headers)
    assert expired.status_code == 401
    assert f"unused for {timeout} s" in expired.json()["detail"]


def test_sign_in_locks_after_max_failed_attempts_until_the_lockout_ends(
    client: TestClient, clock: MovableClock, bank_settings: Settings
) -> None:
    limit = bank_settings.max_failed_pin_attempts
    wrong = {"name": "operator", "password": "not-the-password"}
    answers = [client.post("/auth/token", json=wrong) for _ in range(limit)]
    assert [a.status_code for a in answers] == [401] * limit
    assert answers[-1].json()["detail"] == (
        f"wrong password; operator operator is now locked for "
        f"{bank_settings.lockout_duration_seconds} s"
    )
    right = {"name": "operator", "password": PASSWORDS["operator"]}
    locked = client.post("/auth/token", json=right)
    assert locked.status_code == 401
    assert "is locked; try again in" in locked.json()["detail"]
    clock.advance(bank_settings.lockout_duration_seconds + 1)
    assert client.post("/auth/token", json=right).status_code == 200


def test_concurrent_guesses_judge_no_more_than_the_limit(
    client: TestClient, bank_settings: Settings
) -> None:
    wrong = {"name": "admin", "password": "guess-guess-guess"}
    details: list[str] = []
    start = threading.Barrier(12)

    def guess() -> None:
        start.wait()
        details.append(client.post("/auth/token", json=wrong).json()["detail"])

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    judged = [d for d in details if "locked; try again" not in d]
    assert len(details) == 12
    assert len(judged) == bank_settings.max_failed_pin_attempts


def test_sign_in_attempts_are_rate_limited_per_client(client: TestClient) -> None:
    wrong = {"name": "nobody", "password": "whatever-it-is"}
    codes = [client.post("/auth/token", json=wrong).status_code for _ in range(SIGN_IN_ATTEMPTS)]
    assert codes == [401] * SIGN_IN_ATTEMPTS
    throttled = client.post("/auth/token", json=wrong)
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert "too many sign-in attempts" in throttled.json()["detail"]


def test_passwords_are_kept_as_peppered_bcrypt_and_never_echoed(
    client: TestClient, bank_engine: sa.Engine, bank_settings: Settings
) -> None:
    with bank_engine.connect() as conn:
        stored = conn.scalar(sa.select(Operator.password_hash).where(Operator.name == "admin"))
    assert stored is not None and stored.startswith("$2b$04$")
    assert PASSWORDS["admin"] not in stored
    assert check_password(bank_settings, PASSWORDS["admin"], stored)
    other_pepper = Settings(**{**vars(bank_settings), "pin_pepper": "another-pepper-0123456789"})
    assert not check_password(other_pepper, PASSWORDS["admin"], stored)
    secret = "s3cret-" * 50  # longer than the model allows: a 422 naming the field
    refused = client.post("/auth/token", json={"name": "admin", "password": secret})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "password"]
    assert "s3cret" not in refused.text


def test_create_operator_command_makes_an_operator_who_can_sign_in(
    bank_settings: Settings,
    bank_engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings_for: Callable[..., Settings],
) -> None:
    assert bank_settings.database_url is not None
    monkeypatch.setenv("DATABASE_URL", bank_settings.database_url)
    monkeypatch.setenv("SECRET_KEY", bank_settings.secret_key)
    monkeypatch.setenv("PIN_PEPPER", bank_settings.pin_pepper)
    monkeypatch.setenv("BCRYPT_ROUNDS", "4")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["api", "create-operator", "dana", "--role", "operator", "--password-stdin"]) == 2
    assert "password: expected 10 to 256 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("dana-password-1\n"))
    assert main(["api", "create-operator", "dana", "--role", "operator", "--password-stdin"]) == 0
    assert capsys.readouterr().out.strip() == "operator dana created with role operator"
    monkeypatch.setattr("sys.stdin", io.StringIO("dana-password-1\n"))
    assert main(["api", "create-operator", "dana", "--password-stdin"]) == 2
    assert "exists already; use --replace" in capsys.readouterr().err
    with TestClient(create_app(bank_settings, engine=bank_engine)) as client:
        answer = client.post("/auth/token", json={"name": "dana", "password": "dana-password-1"})
        assert answer.status_code == 200
        assert answer.json()["role"] == "operator"


def test_a_body_that_is_not_utf8_json_is_a_422_naming_the_body(client: TestClient) -> None:
    for raw in (b"\xff\xfe{", b"{not json"):
        answer = client.post(
            "/auth/token", content=raw, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422, raw
        assert answer.json()["detail"][0]["loc"][0] == "body"
