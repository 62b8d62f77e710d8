"""session_bench's customers can make every session of its longest run: each card's PIN is the
seeded one and each account holds the withdrawals it takes in turn."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from host import bank_admin
from scripts.bench.session_bench import (
    ACCOUNT_TYPES,
    CUSTOMERS,
    MAX_SESSIONS,
    WITHDRAWAL_CENTS,
)

WALLET = Path(__file__).resolve().parents[2] / "config" / "wallet.yaml"


def test_every_bench_account_holds_its_share_of_the_longest_run() -> None:
    seed = yaml.safe_load(bank_admin.SEED_FILE.read_text(encoding="utf-8"))
    wallet = yaml.safe_load(WALLET.read_text(encoding="utf-8"))
    accounts = {a["number"]: a for c in seed["customers"] for a in c["accounts"]}
    cards = {card["pan"]: card for c in seed["customers"] for card in c["cards"]}
    share = math.ceil(MAX_SESSIONS / len(CUSTOMERS)) * WITHDRAWAL_CENTS
    for name, pin, key in CUSTOMERS:
        card = cards[wallet["cards"][name]["pan"]]
        assert card["pin"] == pin, name
        (account,) = (
            accounts[n] for n in card["accounts"] if accounts[n]["type"] == ACCOUNT_TYPES[key]
        )
        assert account["balance"] >= share, (name, key, account["balance"], share)
