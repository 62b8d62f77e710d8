"""Every stderr line of real `atm-sim` processes (the demo, the HTTP service) is one JSON log
object, and none of them carries a PIN, a PIN block, a full card number or track data.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from config.log_format import REDACTED
from peripherals.cards import load_wallet
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile
from peripherals.pin_crypto.pin_block import clear_pin_block, encrypt_pin_block
from tests.e2e.live_api import REPO, atm_sim, live_api, product_env

ALICE_PIN = "1234"  # public test PIN of config/bank_seed.yaml
WALLET = load_wallet(REPO / "config" / "wallet.yaml")
REQUIRED_FIELDS = ("time", "level", "logger", "event")
ACCESS_LOG_SECONDS = 10.0
TRACK_2 = re.compile(r"\d{12,19}=\d{4}")  # PAN '=' expiry: the start of any track 2
# The PIN as a word of its own: not inside a path, a hex id, a number or a decimal fraction.
TYPED_PIN = re.compile(rf"(?<![\w./-]){ALICE_PIN}(?![\w.])")
PIN_FIELD = re.compile(r"(^|_)pin_?(block)?($|_)", re.IGNORECASE)


def session_pin_blocks() -> list[str]:
    """Alice's PIN block as the default profile's PIN pad makes it (format 0 is deterministic),
    enciphered and in clear, in hex."""
    pad = load_profile(DEFAULT_PROFILE).devices["pin_pad"].settings
    key = bytes.fromhex(pad["pin_key_tdes"])
    pan = WALLET["alice"].pan
    assert pad["pin_block_format"] == 0, "the check below assumes a deterministic PIN block"
    return [
        encrypt_pin_block(0, key, ALICE_PIN, pan).hex(),
        clear_pin_block(0, ALICE_PIN, pan).hex(),
    ]


def parse_log_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line as a JSON object with the required fields; fails on the first that is not."""
    records = []
    for number, line in enumerate(stderr.splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"stderr line {number} is not JSON: {line[:200]!r}") from None
        assert isinstance(record, dict), f"line {number} is not an object: {line[:200]!r}"
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        assert not missing, f"line {number} lacks {missing}: {line[:200]!r}"
        records.append(record)
    return records


def _wait_for_access_lines(stderr: Callable[[], str], ids: set[str]) -> set[str]:
    """The request ids still without an `api.access` line after ACCESS_LOG_SECONDS."""
    deadline = time.monotonic() + ACCESS_LOG_SECONDS
    while True:
        lines = [
            line  # a line still being written is read at the next look
            for line in stderr().splitlines()
            if '"api.access"' in line and line.endswith("}")
        ]
        logged = {json.loads(line).get("request_id") for line in lines}
        if ids <= logged or time.monotonic() > deadline:
            return ids - logged
        time.sleep(0.05)


def secrets_in(records: list[dict[str, Any]]) -> list[str]:
    """What a log line must never show, each finding with the line that shows it."""
    forbidden = [card.pan for card in WALLET.values()]
    forbidden += [text for card in WALLET.values() if (text := card.track_text(2))]
    forbidden += [text for card in WALLET.values() if (text := card.track_text(1))]
    blocks = session_pin_blocks()
    findings = []
    for record in records:
        line = json.dumps(record)
        findings += [f"{text[:6]}... in {line}" for text in forbidden if text in line]
        findings += [f"PIN block in {line}" for block in blocks if block in line.lower()]
        if TRACK_2.search(line):
            findings.append(f"track 2 data in {line}")
        if "/dev/pts/" not in line and TYPED_PIN.search(line):
            findings.append(f"Alice's PIN in {line}")
        findings += [
            f"{key} value in {line}"
            for key, value in record.items()
            if PIN_FIELD.search(key) and value != REDACTED
        ]
    return findings


def test_every_line_of_a_demo_run_is_a_json_log_without_secrets(
    make_database: Callable[[], str], tmp_path: Path
) -> None:
    env = product_env(tmp_path / "home", DATABASE_URL=make_database(), LOG_LEVEL="DEBUG")
    result = atm_sim("demo", env=env, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Alice" in result.stdout  # the story stays human text on stdout
    records = parse_log_lines(result.stderr)
    loggers = {record["logger"] for record in records}
    assert {"host.server", "device.controller.atm_controller"} <= loggers  # DEBUG reached us
    assert any(r.get("terminal_id") == "ATM00001" for r in records if r["logger"] == "host.server")
    assert secrets_in(records) == []


OPERATOR_PASSWORD = "plum tart 77 window"


def test_every_line_of_an_api_run_is_a_json_log_without_secrets(
    make_database: Callable[[], str], tmp_path: Path
) -> None:
    env = product_env(
        tmp_path / "home",
        DATABASE_URL=make_database(),
        LOG_LEVEL="DEBUG",
        ATM_SIM_OPERATOR_PASSWORD=OPERATOR_PASSWORD,
    )
    made = atm_sim("api", "create-operator", "lab-op", "--role", "operator", env=env)
    assert made.returncode == 0, made.stderr[-2000:]
    with (
        live_api(tmp_path, env, "--seed") as api,
        httpx.Client(base_url=api.url, timeout=30) as http,
    ):
        answers = [http.get("/health"), http.get("/docs")]
        answers.append(http.post("/auth/token", json={"name": "lab-op", "password": "wrong"}))
        assert answers[-1].status_code == 401
        signed_in = http.post("/auth/token", json={"name": "lab-op", "password": OPERATOR_PASSWORD})
        http.headers["Authorization"] = f"Bearer {signed_in.json()['access_token']}"
        answers += [signed_in, created := http.post("/lab/atms", json={})]
        atm = f"/lab/atms/{created.json()['terminal_id']}"
        # Alice enters her PIN on a lab ATM: the PIN pad and the host's PIN unit run in here.
        for path, body in [
            ("wait", {"state": "idle"}),
            ("customer/insert-card", {"card": "alice"}),
            ("wait", {"state": "pin_entry"}),
            ("customer/press", {"keys": [*ALICE_PIN, "enter"]}),
            ("wait", {"state": "transaction_menu"}),
            ("customer/press", {"keys": ["cancel"]}),
            ("wait", {"state": "ejecting_card"}),
            ("customer/take", {"item": "card"}),
        ]:
            answers.append(http.post(f"{atm}/{path}", json=body))
            assert answers[-1].status_code == 200, answers[-1].text
        answers.append(http.delete(atm))
        assert all(a.headers.get("x-request-id") for a in answers)
        # The access line is written just after the answer leaves: wait for it here, while the
        # service runs, so a loaded machine cannot race the check.
        unlogged = _wait_for_access_lines(api.stderr, {a.headers["x-request-id"] for a in answers})
        requests = {
            a.headers["x-request-id"]: f"{a.request.method} {a.request.url.path}" for a in answers
        }
        assert not unlogged, f"requests without an access line: {[requests[i] for i in unlogged]}"
    assert [a.status_code for a in answers if a.status_code >= 300] == [401]
    records = parse_log_lines(made.stderr) + parse_log_lines(api.stderr())
    assert any(r.get("terminal_id") == "ATM00001" for r in records if r["logger"] == "host.server")
    assert secrets_in(records) == []
    assert [r for r in records if OPERATOR_PASSWORD in json.dumps(r)] == []
