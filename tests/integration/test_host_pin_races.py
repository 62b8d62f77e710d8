"""PIN guesses for one card arriving at the same instant over many connections to the real ISO
8583 server: at most MAX_FAILED_PIN_ATTEMPTS of them are ever judged per lockout."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from config.settings import Settings
from device.controller.ports import CardData, HostReply, PinBlock
from device.host_client import HostClient
from device.stan_counter import StanCounter
from host import pin_unit
from host.crypto_keys import mac_key_lookup
from host.server import HostServer
from host.service import Bank
from tests.integration.conftest import BOB, MAC_KEY, BankClock, pin_block

GUESSES = 20
CARD = CardData(BOB.pan, BOB.expiry, "201")
RIGHT = PinBlock(pin_block(BOB.pin, BOB.pan), 0)
WRONG = PinBlock(pin_block("0000", BOB.pan), 0)
BOB_MASKED = "411111******1111"


class Judge:
    """Wraps the PIN unit's verification (the real one runs) and records each verdict in order.

    The verdicts of one card are recorded while its row is locked, so the order is the order in
    which the bank judged them."""

    def __init__(self, verify: Callable[..., bool]) -> None:
        self.verify = verify
        self.verdicts: list[bool] = []
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> bool:
        verdict = self.verify(*args, **kwargs)
        with self.lock:
            self.verdicts.append(verdict)
        return verdict


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Judge:
    recorder = Judge(pin_unit.verify_pin_block)
    monkeypatch.setattr(pin_unit, "verify_pin_block", recorder)
    return recorder


@pytest.fixture
def server(bank: Bank, bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[HostServer]:
    server = HostServer(bank, mac_key_lookup(bank_engine, bank_settings))
    server.start()
    yield server
    server.stop()


def _clients(server: HostServer, count: int, first_stan: int) -> list[HostClient]:
    """One connection each, spread over the four seeded terminals, with STANs of their own."""
    clients = []
    for index in range(count):
        client = HostClient(
            "127.0.0.1",
            server.port,
            f"ATM0000{index % 4 + 1}",
            MAC_KEY,
            timeout=30,
            stan=StanCounter(start=first_stan + index * 10),
        )
        client.connect()
        clients.append(client)
    return clients


def _guess_at_once(server: HostServer, pins: list[PinBlock], first_stan: int) -> list[str]:
    """Send one balance inquiry per PIN block, each on its own connection, released together."""
    clients = _clients(server, len(pins), first_stan)
    barrier = threading.Barrier(len(pins))
    replies: list[HostReply | None] = [None] * len(pins)

    def guess(index: int) -> None:
        barrier.wait(timeout=30)
        replies[index] = clients[index].balance(CARD, pins[index], "checking")

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(len(pins))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.close()
    assert all(reply is not None for reply in replies)
    return [reply.response_code for reply in replies if reply is not None]


def _card_row(engine: sa.Engine) -> sa.Row[Any]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT failed_pin_attempts, status, locked_until FROM cards "
                "WHERE masked_pan = :masked"
            ),
            {"masked": BOB_MASKED},
        ).one()


def _set_card(engine: sa.Engine, attempts: int, locked_until: dt.datetime | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE cards SET failed_pin_attempts = :attempts, locked_until = :until, "
                "status = :status WHERE masked_pan = :masked"
            ),
            {
                "attempts": attempts,
                "until": locked_until,
                "status": "active" if locked_until is None else "locked",
                "masked": BOB_MASKED,
            },
        )


def test_twenty_simultaneous_wrong_pins_are_judged_three_times(
    server: HostServer, judge: Judge, bank_engine: sa.Engine, bank_settings: Settings
) -> None:
    assert bank_settings.max_failed_pin_attempts == 3
    codes = _guess_at_once(server, [WRONG] * GUESSES, first_stan=1)
    assert len(judge.verdicts) == 3  # bcrypt ran three times, not twenty
    assert sorted(codes) == ["55", "55"] + ["75"] * (GUESSES - 2)
    attempts, status, locked_until = _card_row(bank_engine)
    assert (attempts, status) == (3, "locked") and locked_until is not None


def test_the_right_pin_among_simultaneous_guesses_passes_only_if_judged_in_time(
    server: HostServer, judge: Judge, bank_engine: sa.Engine
) -> None:
    rounds = 5
    for round_number in range(rounds):
        _set_card(bank_engine, 0, None)
        judge.verdicts.clear()
        right_at = (round_number * 7) % GUESSES  # the right PIN hides at another place each round
        pins = [RIGHT if i == right_at else WRONG for i in range(GUESSES)]
        codes = _guess_at_once(server, pins, first_stan=1 + round_number * 1000)
        verdicts = list(judge.verdicts)
        wrong_in_a_row = 0
        for verdict in verdicts:
            if verdict:
                assert wrong_in_a_row < 3, f"round {round_number}: judged after a lockout"
                wrong_in_a_row = 0
            else:
                wrong_in_a_row += 1
                assert wrong_in_a_row <= 3, f"round {round_number}: {verdicts}"
        # Approved exactly when the bank judged the right PIN (before any lock), else 75.
        assert (codes[right_at] == "00") == (True in verdicts), (codes[right_at], verdicts)
        if True not in verdicts:
            assert codes[right_at] == "75"
            assert len(verdicts) == 3
        assert len(verdicts) <= 3 + (3 if True in verdicts else 0)
        assert codes.count("55") + codes.count("75") == GUESSES - codes.count("00")


def _wait_for_a_lock_wait(engine: sa.Engine, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting:
                return
            conn.rollback()  # pg_stat_activity is read once per transaction
            time.sleep(0.02)
    raise AssertionError("the right PIN never waited for the card")


def test_a_right_pin_racing_a_lock_is_refused_and_leaves_the_card_locked(
    server: HostServer, bank_engine: sa.Engine, bank_clock: BankClock
) -> None:
    _set_card(bank_engine, 2, None)  # two wrong guesses already counted
    locked_until = bank_clock() + dt.timedelta(seconds=1800)
    reply: list[HostReply] = []
    (client,) = _clients(server, 1, first_stan=500)
    racer = threading.Thread(
        target=lambda: reply.append(client.balance(CARD, RIGHT, "checking")), daemon=True
    )
    # A concurrent third wrong guess holds the card row while it locks the card.
    with bank_engine.connect() as conn:
        transaction = conn.begin()
        conn.execute(
            sa.text("SELECT id FROM cards WHERE masked_pan = :m FOR UPDATE"), {"m": BOB_MASKED}
        )
        racer.start()
        _wait_for_a_lock_wait(bank_engine)
        conn.execute(
            sa.text(
                "UPDATE cards SET failed_pin_attempts = 3, status = 'locked', "
                "locked_until = :until WHERE masked_pan = :m"
            ),
            {"until": locked_until, "m": BOB_MASKED},
        )
        transaction.commit()
    racer.join(timeout=30)
    client.close()
    assert [r.response_code for r in reply] == ["75"]
    attempts, status, until = _card_row(bank_engine)
    assert (attempts, status, until) == (3, "locked", locked_until)
