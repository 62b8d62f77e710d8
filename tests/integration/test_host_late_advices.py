"""Advices over the real ISO 8583 server on a seeded PostgreSQL bank: a completion or reversal
days late still finds its withdrawal by field 90 (STAN and time), a resent one under a new STAN
moves nothing and records no second settlement, and open holds are reported with their age."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from config.settings import Settings
from device.clock import VirtualClock
from device.controller.ports import CardData, PinBlock
from device.host_client import HostClient
from device.sim import cli
from host import iso8583 as iso
from host.bank_admin import open_holds
from host.crypto_keys import mac_key_lookup
from host.iso8583 import Message
from host.server import HostServer
from host.service import Bank
from tests.conftest import TEST_SECRETS
from tests.integration.conftest import ALICE, MAC_KEY, balances, ledger_problems, pin_block

CARD = CardData(ALICE.pan, ALICE.expiry, "201")
PIN = PinBlock(pin_block(ALICE.pin, ALICE.pan), 0)
DAY = 86400
# Day D, three days before the real today, so that the real clock of `atm-sim host holds` sees
# the hold three days old while the bank's clock moves from D to D + 2.
DAY_D = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).replace(microsecond=0)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(DAY_D)


@pytest.fixture
def server(
    bank_engine: sa.Engine, bank_settings: Settings, clock: VirtualClock
) -> Iterator[HostServer]:
    bank = Bank(bank_engine, bank_settings, clock=clock.now)
    server = HostServer(bank, mac_key_lookup(bank_engine, bank_settings), now=clock.now)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(server: HostServer, clock: VirtualClock) -> Iterator[HostClient]:
    with HostClient("127.0.0.1", server.port, "ATM00001", MAC_KEY, timeout=10, clock=clock) as atm:
        yield atm


def _rows(engine: sa.Engine, query: str, **params: object) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(query), params)]


def _hold_status(engine: sa.Engine, stan: str) -> str:
    ((status,),) = _rows(
        engine,
        "SELECT h.status FROM holds h JOIN host_transactions t ON t.id = h.host_transaction_id "
        "WHERE t.stan = :stan",
        stan=stan,
    )
    return str(status)


@pytest.mark.parametrize(
    ("advice", "expected"), [("complete", (245000, 245000)), ("reverse", (250000, 250000))]
)
def test_an_advice_two_days_late_settles_its_hold(
    client: HostClient,
    clock: VirtualClock,
    bank_engine: sa.Engine,
    advice: str,
    expected: tuple[int, int],
) -> None:
    withdrawal = client.withdraw(CARD, PIN, "checking", 5000)
    assert withdrawal.approved
    clock.advance(2 * DAY + 3600)  # day D + 2: the ATM was off for two days
    sent = withdrawal.transmitted_at.isoformat()
    if advice == "complete":
        code = client.complete(withdrawal.stan, sent, 5000)
    else:
        code = client.reverse(withdrawal.stan, sent, 5000, 0)
    assert code == "00"
    assert balances(bank_engine, "10000001") == expected
    assert _hold_status(bank_engine, withdrawal.stan) == (
        "completed" if advice == "complete" else "reversed"
    )
    assert open_holds(bank_engine, now=clock.now()) == []
    assert ledger_problems(bank_engine) == []


def test_a_late_reversal_of_a_request_never_seen_blocks_exactly_that_request(
    server: HostServer, client: HostClient, clock: VirtualClock, bank_engine: sa.Engine
) -> None:
    lost_at = clock.now() - dt.timedelta(days=2)  # sent two days ago, never arrived
    assert client.reverse("000777", lost_at.isoformat(), 5000, 0) == "25"
    message = Message(
        "0200",
        {
            "3": "012000",
            "4": iso.amount_field(5000),
            "7": iso.transmission_time(lost_at),
            "11": "000777",
            **iso.local_time_fields(lost_at),
            "35": iso.track2(ALICE.pan, ALICE.expiry, "201"),
            "41": "ATM00001",
            "49": "978",
            "52": PIN.block,
            "53": iso.security_control(0),
        },
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(iso.frame(iso.encode_message(message, MAC_KEY)))
        decoder = iso.FrameDecoder()
        bodies: list[bytes] = []
        while not bodies:
            bodies = decoder.feed(sock.recv(4096))
    assert iso.decode_message(bodies[0]).text("39") == "12"  # reversed before it arrived
    assert balances(bank_engine, "10000001") == (250000, 250000)


@pytest.mark.parametrize("advice", ["complete", "reverse"])
def test_a_resent_advice_under_a_new_stan_records_no_second_settlement(
    client: HostClient, bank_engine: sa.Engine, advice: str
) -> None:
    withdrawal = client.withdraw(CARD, PIN, "checking", 4000)
    sent = withdrawal.transmitted_at.isoformat()
    for _ in range(3):  # the advice queue sends again after a lost answer: a new STAN each time
        if advice == "complete":
            assert client.complete(withdrawal.stan, sent, 4000) == "00"
        else:
            assert client.reverse(withdrawal.stan, sent, 4000, 0) == "00"
    kind = "completion" if advice == "complete" else "reversal"
    settled = _rows(
        bank_engine,
        "SELECT t.kind, t.amount, count(e.id) FROM host_transactions t "
        "JOIN host_transactions o ON o.id = t.original_id "
        "LEFT JOIN journal_entries e ON e.host_transaction_id = t.id "
        "WHERE o.stan = :stan GROUP BY t.id ORDER BY t.id",
        stan=withdrawal.stan,
    )
    posted = 1 if advice == "complete" else 0
    first_amount = 4000
    assert settled == [
        (kind, first_amount, posted),
        (f"{kind}_repeat", 0, 0),
        (f"{kind}_repeat", 0, 0),
    ]
    expected = (246000, 246000) if advice == "complete" else (250000, 250000)
    assert balances(bank_engine, "10000001") == expected
    assert ledger_problems(bank_engine) == []


def test_open_holds_are_reported_with_their_age_and_never_released(
    client: HostClient,
    clock: VirtualClock,
    bank_engine: sa.Engine,
    bank_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    open_one = client.withdraw(CARD, PIN, "checking", 5000)
    settled = client.withdraw(CARD, PIN, "checking", 2000)
    assert client.complete(settled.stan, settled.transmitted_at.isoformat(), 2000) == "00"
    clock.advance(2 * DAY + 90)

    (hold,) = open_holds(bank_engine, now=clock.now(), older_than_seconds=DAY)
    assert (hold.terminal_id, hold.stan, hold.masked_pan, hold.account, hold.amount) == (
        "ATM00001",
        open_one.stan,
        "476173******0010",
        "10000001",
        5000,
    )
    assert hold.age_seconds == 2 * DAY + 90
    assert open_holds(bank_engine, now=clock.now(), older_than_seconds=3 * DAY) == []

    for name, value in {**TEST_SECRETS, "ATM_SIM_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", str(bank_settings.database_url))
    assert cli.main(["host", "holds", "--older-than", str(DAY)]) == 0
    printed = capsys.readouterr().out
    assert f"ATM00001 {open_one.stan}" in printed
    assert "476173******0010" in printed and ALICE.pan not in printed
    assert "50.00" in printed and " 3d " in printed  # the real clock: three days after D
    assert "1 open hold(s)" in printed
    assert cli.main(["host", "holds", "--older-than", str(5 * DAY)]) == 0
    assert "no open holds" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        cli.main(["host", "holds", "--older-than", "soon"])
    assert refused.value.code == 2
    assert "'soon' is not a number of seconds" in capsys.readouterr().err
    # Reporting never settles anything: the hold is still there, still held.
    assert _hold_status(bank_engine, open_one.stan) == "held"
    assert balances(bank_engine, "10000001") == (248000, 243000)
