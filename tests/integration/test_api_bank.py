"""The bank's HTTP routes on the real seeded bank: customers, accounts and ledger lines, masked
cards and their status changes as the host then sees them, terminals by key check value, host
records, open holds, statement jobs, metrics, readiness and production's hidden docs.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterator

import psec.des
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from config.settings import Settings
from device.sim.api.app import create_app
from host.messages import RequestKind as K
from host.messages import ResponseCode as R
from host.service import Bank
from tests.api_support import FULL_PANS, add_operators, sign_in, wait_for_job
from tests.integration.conftest import ALICE, BankRequests

SEED_KEYS = {
    "tmk": "0123456789ABCDEFFEDCBA9876543210",
    "pin_key_tdes": "89ABCDEF0123456776543210FEDCBA98",
}


@pytest.fixture
def client(bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[TestClient]:
    add_operators(bank_engine, bank_settings)
    with TestClient(create_app(bank_settings, engine=bank_engine)) as test_client:
        yield test_client


@pytest.fixture
def viewer(client: TestClient) -> dict[str, str]:
    return sign_in(client, "viewer")


@pytest.fixture
def admin(client: TestClient) -> dict[str, str]:
    return sign_in(client, "admin")


def _withdraw(bank: Bank, requests: BankRequests, amount: int, *, complete: bool) -> str:
    request = requests.card(K.WITHDRAWAL, ALICE, amount=amount)
    assert bank.handle(request).response_code is R.APPROVED
    if complete:
        advice = requests.advice(K.COMPLETION, request.stan, amount, dispensed=amount)
        assert bank.handle(advice).response_code is R.APPROVED
    return request.stan


def test_customers_page_and_unknown_ids_are_404(client: TestClient, viewer: dict[str, str]) -> None:
    page = client.get("/bank/customers", params={"limit": 2}, headers=viewer).json()
    assert page["total"] == 3 and page["limit"] == 2 and len(page["items"]) == 2
    alice = page["items"][0]
    assert alice["name"] == "Alice Martin"
    assert alice["accounts"] == ["10000001", "10000002"]
    rest = client.get("/bank/customers", params={"offset": 2}, headers=viewer).json()
    assert [c["name"] for c in rest["items"]] == ["Charlie Okafor"]
    one = client.get(f"/bank/customers/{alice['id']}", headers=viewer)
    assert one.json() == alice
    missing = client.get("/bank/customers/999999", headers=viewer)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no customer 999999"}
    bad = client.get("/bank/customers/0", headers=viewer)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["path", "customer_id"]


def test_account_balances_and_ledger_lines_with_paging_and_dates(
    client: TestClient, viewer: dict[str, str], bank: Bank, bank_requests: BankRequests
) -> None:
    _withdraw(bank, bank_requests, 5000, complete=True)
    _withdraw(bank, bank_requests, 2000, complete=False)
    account = client.get("/bank/accounts/10000001", headers=viewer).json()
    assert (account["ledger_balance"], account["available_balance"], account["held"]) == (
        245000,
        243000,
        2000,
    )
    lines = client.get("/bank/accounts/10000001/lines", headers=viewer).json()
    assert lines["total"] == 2
    assert [line["amount"] for line in lines["items"]] == [-5000, 250000]  # newest first
    assert lines["items"][0]["balance_after"] == 245000
    second = client.get(
        "/bank/accounts/10000001/lines", params={"limit": 1, "offset": 1}, headers=viewer
    ).json()
    assert [line["amount"] for line in second["items"]] == [250000]
    today = dt.datetime.now(dt.UTC).date()
    for params, expected in (
        ({"from": today.isoformat(), "to": today.isoformat()}, 2),
        ({"from": (today + dt.timedelta(days=1)).isoformat()}, 0),
        ({"to": (today - dt.timedelta(days=1)).isoformat()}, 0),
    ):
        found = client.get("/bank/accounts/10000001/lines", params=params, headers=viewer)
        assert found.json()["total"] == expected, params
    assert client.get("/bank/accounts/99999999", headers=viewer).status_code == 404
    assert client.get("/bank/accounts/99999999/lines", headers=viewer).status_code == 404
    bad = client.get("/bank/accounts/10000001/lines", params={"from": "0001-01-01"}, headers=viewer)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "from"]
    listed = client.get("/bank/accounts", params={"kind": "savings"}, headers=viewer).json()
    assert [a["number"] for a in listed["items"]] == ["10000002", "10000005"]


def test_cards_are_masked_and_block_unblock_reset_change_what_the_host_answers(
    client: TestClient,
    viewer: dict[str, str],
    admin: dict[str, str],
    bank: Bank,
    bank_requests: BankRequests,
) -> None:
    cards = client.get("/bank/cards", headers=viewer)
    assert [c["masked_pan"] for c in cards.json()["items"]] == [
        "476173******0010",
        "411111******1111",
        "401234***8909",
    ]
    assert not any(pan in cards.text for pan in FULL_PANS)
    assert "pin" not in {key for card in cards.json()["items"] for key in card} - {
        "failed_pin_attempts"
    }
    alice_card = cards.json()["items"][0]["id"]
    assert client.post(f"/bank/cards/{alice_card}/block", headers=admin).json()["status"] == (
        "blocked"
    )
    declined = bank.handle(bank_requests.card(K.BALANCE, ALICE))
    assert declined.response_code is R.TRANSACTION_NOT_PERMITTED
    assert client.post(f"/bank/cards/{alice_card}/unblock", headers=admin).json()["status"] == (
        "active"
    )
    assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is R.APPROVED
    for _ in range(3):
        bank.handle(bank_requests.card(K.BALANCE, ALICE, pin="9999"))
    locked = client.get(f"/bank/cards/{alice_card}", headers=viewer).json()
    assert locked["status"] == "locked" and locked["locked_until"] is not None
    assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is (R.PIN_TRIES_EXCEEDED)
    reset = client.post(f"/bank/cards/{alice_card}/reset-pin-tries", headers=admin).json()
    assert (reset["status"], reset["failed_pin_attempts"], reset["locked_until"]) == (
        "active",
        0,
        None,
    )
    assert bank.handle(bank_requests.card(K.BALANCE, ALICE)).response_code is R.APPROVED
    assert client.post("/bank/cards/424242/block", headers=admin).status_code == 404


def test_terminals_show_key_check_values_never_keys(
    client: TestClient, viewer: dict[str, str]
) -> None:
    terminals = client.get("/bank/terminals", headers=viewer)
    assert [t["terminal_id"] for t in terminals.json()] == [
        "ATM00001",
        "ATM00002",
        "ATM00003",
        "ATM00004",
    ]
    one = client.get("/bank/terminals/ATM00001", headers=viewer).json()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # psec uses cryptography's deprecated 2-key TDES
        for name, key in SEED_KEYS.items():
            expected = bytes(psec.des.generate_kcv(bytes.fromhex(key), 3)).hex().upper()
            assert one["key_check_values"][name] == expected, name
    assert set(one["key_check_values"]) >= {"tmk", "pin_key_tdes", "pin_key_aes", "mac_key"}
    assert one["keys_readable"] is True
    for key in SEED_KEYS.values():
        assert key not in terminals.text and key.lower() not in terminals.text
    assert client.get("/bank/terminals/NOPE0001", headers=viewer).status_code == 404


def test_host_records_filter_and_open_holds_age(
    client: TestClient, viewer: dict[str, str], bank: Bank, bank_requests: BankRequests
) -> None:
    done = _withdraw(bank, bank_requests, 5000, complete=True)
    held = _withdraw(bank, bank_requests, 2000, complete=False)
    withdrawals = client.get(
        "/bank/host-transactions", params={"kind": "withdrawal"}, headers=viewer
    ).json()
    assert [(t["stan"], t["amount"]) for t in withdrawals["items"]] == [(held, 2000), (done, 5000)]
    assert {t["masked_pan"] for t in withdrawals["items"]} == {"476173******0010"}
    assert withdrawals["items"][0]["account"] == "10000001"
    by_stan = client.get("/bank/host-transactions", params={"stan": done}, headers=viewer).json()
    assert {t["kind"] for t in by_stan["items"]} == {"withdrawal"}
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    later = client.get("/bank/host-transactions", params={"since": future}, headers=viewer)
    assert later.json()["total"] == 0
    naive = client.get(
        "/bank/host-transactions", params={"since": "2026-01-01T00:00:00"}, headers=viewer
    )
    assert naive.status_code == 422
    assert naive.json()["detail"][0]["loc"] == ["query", "since"]
    holds = client.get("/bank/holds", headers=viewer).json()
    assert holds["count"] == 1 and holds["total_amount"] == 2000
    assert holds["items"][0]["stan"] == held
    assert holds["items"][0]["masked_pan"] == "476173******0010"
    assert holds["items"][0]["age_seconds"] >= 0
    aged = client.get("/bank/holds", params={"older_than_seconds": 3600}, headers=viewer).json()
    assert aged["count"] == 0
    metrics = client.get("/metrics").text
    assert 'atm_host_answered_total{kind="withdrawal",response_code="00"} 2.0' in metrics
    assert "atm_open_holds 1.0" in metrics
    assert "atm_open_holds_cents 2000.0" in metrics
    assert 'atm_api_request_seconds_count{method="GET",route="/bank/holds",status="200"}' in (
        metrics
    )


def test_statement_is_a_job_whose_pdf_comes_when_ready(
    client: TestClient, viewer: dict[str, str], bank_settings: Settings
) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    asked = client.post(
        "/bank/statements",
        json={"account": "10000001", "from": today, "to": today},
        headers=viewer,
    )
    assert asked.status_code == 202
    job = asked.json()
    assert job["kind"] == "statement" and job["status"] in ("queued", "running", "succeeded")
    assert asked.headers["location"] == f"/bank/statements/{job['id']}"
    done = wait_for_job(client, f"/bank/statements/{job['id']}", viewer)
    assert done["status"] == "succeeded", done
    assert done["result"]["closing_balance"] == 250000
    assert done["files"] == ["statement.pdf"]
    pdf = client.get(f"/bank/statements/{job['id']}/pdf", headers=viewer)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    backwards = client.post(
        "/bank/statements",
        json={"account": "10000001", "from": "2026-11-30", "to": "2026-11-01"},
        headers=viewer,
    )
    assert backwards.status_code == 422
    assert backwards.json()["detail"][0]["loc"] == ["body", "to"]
    unknown = client.post(
        "/bank/statements",
        json={"account": "ATM-CASH-ATM00001", "from": today, "to": today},
        headers=viewer,
    )
    assert unknown.status_code == 404
    missing = client.get(f"/bank/statements/{'0' * 32}", headers=viewer)
    assert missing.status_code == 404


def test_ready_checks_database_and_migrations(
    client: TestClient,
    make_database: Callable[[], str],
    settings_for: Callable[..., Settings],
) -> None:
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["migrations"]["ok"] is True
    empty = settings_for(DATABASE_URL=make_database())
    with TestClient(create_app(empty)) as unmigrated:
        answer = unmigrated.get("/ready")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["migrations"]["ok"] is False
    assert "atm-sim db upgrade" in checks["migrations"]["detail"]


def test_production_hides_the_docs_and_the_schema(
    bank_engine: sa.Engine, settings_for: Callable[..., Settings], bank_url: str
) -> None:
    production = settings_for(DATABASE_URL=bank_url, ENVIRONMENT="production")
    with TestClient(create_app(production, engine=bank_engine)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        for hidden in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(hidden).status_code == 404, hidden
    development = settings_for(DATABASE_URL=bank_url, ENVIRONMENT="development")
    with TestClient(create_app(development, engine=bank_engine)) as client:
        assert client.get("/docs").status_code == 200
        assert "/bank/accounts/{number}" in client.get("/openapi.json").json()["paths"]
