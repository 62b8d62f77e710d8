"""The ATM lab over HTTP, end to end: lab ATMs with devices on real ptys against the real ISO
8583 host and PostgreSQL, driven through the API (customer, operator, faults), and scenario runs
as jobs with JUnit XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from device.sim.api.app import create_app
from device.sim.bank_stack import BankStack
from tests.api_support import FULL_PANS, SEEDED_PINS, add_operators, sign_in, wait_for_job

ATM = "/lab/atms/ATM00001"


@pytest.fixture
def client(bank_stack: BankStack) -> Iterator[TestClient]:
    add_operators(bank_stack.engine, bank_stack.settings)
    app = create_app(
        bank_stack.settings,
        engine=bank_stack.engine,
        iso_host=("127.0.0.1", bank_stack.server.port),
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def operator(client: TestClient) -> dict[str, str]:
    return sign_in(client, "operator")


def _post(client: TestClient, path: str, headers: dict[str, str], body: Any = None) -> Any:
    response = client.post(f"{ATM}/{path}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _run(client: TestClient, headers: dict[str, str], steps: list[tuple[str, Any]]) -> list[Any]:
    return [_post(client, path, headers, body) for path, body in steps]


UP_TO_PIN = [
    ("wait", {"state": "idle"}),
    ("customer/insert-card", {"card": "alice"}),
    ("wait", {"state": "pin_entry"}),
    ("customer/press", {"keys": ["1", "2", "3", "4", "enter"]}),
]
WITHDRAW_50 = [
    *UP_TO_PIN,
    ("wait", {"state": "transaction_menu"}),
    ("customer/press", {"keys": ["F1"]}),
    ("wait", {"state": "account_selection"}),
    ("customer/press", {"keys": ["F1"]}),
    ("wait", {"state": "amount_entry"}),
    ("customer/press", {"keys": ["F2"]}),
    ("wait", {"state": "ejecting_card"}),
    ("customer/take", {"item": "card"}),
    ("wait", {"state": "presenting_cash"}),
    ("customer/take", {"item": "cash"}),
    ("wait", {"state": "idle"}),
]


def test_a_withdrawal_driven_through_the_lab_moves_the_balance_by_the_amount(
    client: TestClient, operator: dict[str, str]
) -> None:
    before = client.get("/bank/accounts/10000001", headers=operator).json()["ledger_balance"]
    created = client.post("/lab/atms", json={"profile": "default"}, headers=operator)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == ATM
    assert created.json()["host"]["connected"] is True
    answers = _run(client, operator, WITHDRAW_50)
    menu = answers[4]["atm"]["screen"]
    assert menu["name"] == "transaction_menu" and menu["keys"]["F1"]
    assert answers[3]["done"] == "pressed * * * * enter"
    receipt = _post(client, "customer/take", operator, {"item": "receipt"})
    assert "476173******0010" in receipt["receipt"]
    after = client.get("/bank/accounts/10000001", headers=operator).json()["ledger_balance"]
    assert before - after == 5000
    journal = client.get(f"{ATM}/journal", params={"tail": 30}, headers=operator)
    events = [entry["event"] for entry in journal.json()["entries"]]
    assert events.index("authorised") < events.index("taken") < events.index("session_closed")
    devices = client.get(f"{ATM}/devices", headers=operator).json()
    assert set(devices) == {"card_reader", "pin_pad", "cash_dispenser", "receipt_printer"}
    assert devices["cash_dispenser"]["counters"]
    assert devices["receipt_printer"]["receipts"] == 1
    everything = "".join(
        [journal.text, receipt["receipt"], str(devices), *(str(a) for a in answers)]
    )
    assert not any(pan in everything for pan in FULL_PANS)
    assert not any(f"'{pin}'" in everything or f'"{pin}"' in everything for pin in SEEDED_PINS)
    assert 'atm_lab_atms{state="idle"} 1.0' in client.get("/metrics").text


def test_faults_on_devices_links_and_host_through_one_interface(
    client: TestClient, operator: dict[str, str]
) -> None:
    assert client.post("/lab/atms", json={}, headers=operator).status_code == 201
    catalogue = client.get(f"{ATM}/faults/catalogue", headers=operator).json()
    targets = {t["target"] for t in catalogue}
    assert {"cash_dispenser", "pin_pad.link", "host"} <= targets
    armed = client.post(
        f"{ATM}/faults",
        json={
            "target": "cash_dispenser",
            "fault": "jam",
            "mode": "once",
            "params": {"after_notes": 1},
        },
        headers=operator,
    )
    assert armed.status_code == 201, armed.text
    assert armed.json()["description"] == "jam (once; after_notes=1)"
    link = {"target": "pin_pad.link", "fault": "delay", "params": {"seconds": 0.01}}
    assert client.post(f"{ATM}/faults", json=link, headers=operator).status_code == 201
    listed = client.get(f"{ATM}/faults", headers=operator).json()["faults"]
    assert {(f["target"], f["fault"]) for f in listed} == {
        ("cash_dispenser", "jam"),
        ("pin_pad.link", "delay"),
    }
    left = client.delete(
        f"{ATM}/faults", params={"target": "cash_dispenser"}, headers=operator
    ).json()["faults"]
    assert [(f["target"], f["fault"]) for f in left] == [("pin_pad.link", "delay")]
    for body, field in (
        ({"target": "coffee_machine", "fault": "jam"}, "target"),
        ({"target": "cash_dispenser", "fault": "explode"}, "fault"),
        ({"target": "cash_dispenser", "fault": "jam", "params": {"mode": "once"}}, "params"),
        ({"target": "cash_dispenser", "fault": "jam", "params": {"after_notes": -1}}, "params"),
        ({"target": "cash_dispenser", "fault": "jam", "mode": "on_command"}, "on_command"),
        ({"target": "host", "fault": "slow", "params": {"seconds": "soon"}}, "params"),
        ({"target": "host", "fault": "down", "mode": "on_command", "on_command": 2}, "mode"),
    ):
        refused = client.post(f"{ATM}/faults", json=body, headers=operator)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["detail"][0]["loc"] == ["body", field], body
    host = {"target": "host", "fault": "declining", "params": {"code": "05"}}
    declined = client.post(f"{ATM}/faults", json=host, headers=operator)
    assert declined.status_code == 201
    assert "declining (persistent; code=05" in declined.json()["description"]
    assert client.get(ATM, headers=operator).json()["host"]["fault"].startswith("declining")
    _run(client, operator, UP_TO_PIN)
    _post(client, "wait", operator, {"state": "ejecting_card"})
    _post(client, "customer/take", operator, {"item": "card"})
    _post(client, "wait", operator, {"state": "idle"})
    journal = client.get(f"{ATM}/journal", headers=operator).json()["entries"]
    assert {"event": "pin_verified", "code": "05"} in [
        {"event": e["event"], "code": e["fields"].get("code")} for e in journal
    ]
    cleared = client.delete(f"{ATM}/faults", headers=operator).json()["faults"]
    assert cleared == []
    assert client.get(ATM, headers=operator).json()["host"]["fault"] is None


def test_operator_actions_follow_the_controllers_modes(
    client: TestClient, operator: dict[str, str]
) -> None:
    assert client.post("/lab/atms", json={}, headers=operator).status_code == 201
    _post(client, "wait", operator, {"state": "idle"})
    outside = client.post(f"{ATM}/operator/replenish", json={}, headers=operator)
    assert outside.status_code == 409
    assert outside.json()["detail"] == "replenishment needs supervisor mode"
    assert _post(client, "operator/supervisor", operator)["atm"]["state"] == "supervisor"
    unknown = client.post(
        f"{ATM}/operator/replenish", json={"cassettes": {"9": 10}}, headers=operator
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "cassettes"]
    done = _post(client, "operator/replenish", operator, {"cassettes": {"1": 100}})
    assert done["done"] == "cassettes set: 1: 100"
    cassettes = client.get(f"{ATM}/devices", headers=operator).json()["cash_dispenser"]
    assert [c["count"] for c in cassettes["cassettes"] if c["number"] == 1] == [100]
    assert _post(client, "operator/purge", operator)["done"].endswith("purged to the reject bin")
    assert _post(client, "operator/leave-supervisor", operator)["atm"]["state"] != "supervisor"
    _post(client, "wait", operator, {"state": "idle"})
    held = _post(client, "operator/out-of-service", operator)
    assert held["atm"]["state"] == "out_of_service"
    assert held["atm"]["out_of_service_reason"] == "taken out of service by the operator"
    _post(client, "operator/in-service", operator)
    assert _post(client, "wait", operator, {"state": "idle"})["atm"]["state"] == "idle"
    assert client.post("/lab/atms/ATM00009/operator/purge", headers=operator).status_code == 404
    wrong = client.post(f"{ATM}/operator/dance", headers=operator)
    assert wrong.status_code == 422


def test_lab_atm_life_create_list_step_advance_stop(
    client: TestClient, operator: dict[str, str]
) -> None:
    made = client.post("/lab/atms", json={"clock": "virtual", "auto_step": False}, headers=operator)
    assert made.status_code == 201
    assert made.json()["clock"] == "virtual"
    again = client.post("/lab/atms", json={"profile": "default"}, headers=operator)
    assert again.status_code == 409
    assert "running already" in again.json()["detail"]
    unknown = client.post("/lab/atms", json={"profile": "nope"}, headers=operator)
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "profile"]
    assert [a["terminal_id"] for a in client.get("/lab/atms", headers=operator).json()] == [
        "ATM00001"
    ]
    stepped = _post(client, "step", operator, {"count": 3})
    assert stepped["done"] == "3 controller step(s)"
    moved = _post(client, "advance", operator, {"seconds": 31})
    assert moved["atm"]["clock_seconds"] >= 31
    assert client.delete(ATM, headers=operator).status_code == 204
    assert client.get(ATM, headers=operator).status_code == 404
    assert client.post("/lab/atms", json={}, headers=operator).status_code == 201
    system = client.post(f"{ATM}/advance", json={"seconds": 5}, headers=operator)
    assert system.status_code == 409
    assert system.json()["detail"] == "advance needs a lab ATM made with clock: virtual"


def test_scenario_runs_are_jobs_with_results_and_junit(
    client: TestClient, operator: dict[str, str]
) -> None:
    names = client.get("/lab/scenarios", headers=operator).json()["scenarios"]
    assert "withdrawal_fast_cash" in names
    asked = client.post(
        "/lab/scenario-runs", json={"names": ["withdrawal_fast_cash"]}, headers=operator
    )
    assert asked.status_code == 202, asked.text
    job = wait_for_job(client, asked.headers["location"], operator, seconds=90)
    assert job["status"] == "succeeded", job
    assert job["result"]["passed"] is True
    assert job["result"]["scenarios"][0]["result"] == "PASS"
    junit = client.get(f"/lab/scenario-runs/{job['id']}/junit", headers=operator)
    assert junit.headers["content-type"].startswith("application/xml")
    suite = ET.fromstring(junit.content)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")
    broken = client.post(
        "/lab/scenario-runs",
        json={"yaml": "version: 1\nname: x\nsteps:\n  - wait: nowhere\n"},
        headers=operator,
    )
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["loc"] == ["body", "yaml"]
    assert "uploaded.yaml:4" in broken.json()["detail"][0]["msg"]
    unknown = client.post("/lab/scenario-runs", json={"names": ["nope"]}, headers=operator)
    assert unknown.status_code == 422
    both = client.post("/lab/scenario-runs", json={}, headers=operator)
    assert both.status_code == 422
