"""The customers and terminals of a fleet run: the seeded bank's three customers plus generated
ones, created through the bank's own seeding code, each card also put into a generated wallet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from config.card_numbers import luhn_check_digit, mask_pan
from config.data_files import VERSION, DataFileError, read_data_file
from config.settings import Settings
from host import bank_admin
from peripherals.cards import load_wallet
from peripherals.harness.profile import DEFAULT_PROFILE, AtmProfile, parse_profile
from peripherals.receipt_printer import IMAGES_ON_REQUEST

WALLET_FILE = DEFAULT_PROFILE.parents[1] / "wallet.yaml"
MAX_TERMINALS = 9999
GENERATED_PAN_PREFIX = "499999"  # 16-digit test PANs: prefix, 9-digit serial, Luhn check digit
GENERATED_ACCOUNT_BASE = 20000000
GENERATED_EXPIRY = "3112"


class PopulationError(ValueError):
    """The fleet's customers or terminals cannot be prepared (bad counts, a seed that failed)."""


@dataclass(frozen=True)
class SimCustomer:
    """A customer the fleet can send to an ATM: a wallet card id, its PIN, its accounts."""

    card_id: str
    pin: str = field(repr=False)
    pan: str = field(repr=False)
    accounts: tuple[tuple[str, str], ...]  # (account type, account number), default first

    @property
    def account_types(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.accounts)

    def __str__(self) -> str:
        return f"{self.card_id} ({mask_pan(self.pan)})"


@dataclass(frozen=True)
class Population:
    customers: tuple[SimCustomer, ...]
    terminal_ids: tuple[str, ...]
    wallet_path: Path
    seed_path: Path

    @property
    def account_numbers(self) -> tuple[str, ...]:
        return tuple(number for c in self.customers for _, number in c.accounts)


def terminal_ids(count: int) -> tuple[str, ...]:
    """ATM00001.. ATM<count>: the seed has the first four, the rest are registered here."""
    if not 1 <= count <= MAX_TERMINALS:
        raise PopulationError(f"a fleet has 1 to {MAX_TERMINALS} ATMs, not {count}")
    return tuple(f"ATM{n:05d}" for n in range(1, count + 1))


def _generated_customer(index: int, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """(seed file entry, wallet entry) of generated customer number `index` (from 1)."""
    body = f"{GENERATED_PAN_PREFIX}{index:09d}"
    pan = body + luhn_check_digit(body)
    pin = f"{rng.randrange(10_000):04d}"
    checking = str(GENERATED_ACCOUNT_BASE + 2 * index)
    accounts = [{"number": checking, "type": "checking", "balance": rng.randrange(0, 400_001, 100)}]
    if rng.random() < 0.6:
        savings = str(GENERATED_ACCOUNT_BASE + 2 * index + 1)
        accounts.append(
            {"number": savings, "type": "savings", "balance": rng.randrange(0, 2_000_001, 100)}
        )
    seed_entry = {
        "name": f"Fleet Customer {index:05d}",
        "accounts": accounts,
        "cards": [
            {
                "pan": pan,
                "pin": pin,
                "expiry": GENERATED_EXPIRY,
                "accounts": [a["number"] for a in accounts],
            }
        ],
    }
    wallet_entry = {
        "label": f"Fleet Customer {index:05d}",
        "pan": pan,
        "name": f"CUSTOMER/FLEET {index:05d}",
        "expiry": GENERATED_EXPIRY,
        "service_code": "201",
        "discretionary": "0000000000",
    }
    return seed_entry, wallet_entry


def _seeded_customers(seed: dict[str, Any], wallet: dict[str, Any]) -> list[SimCustomer]:
    """The seed file's customers whose cards the default wallet holds, matched by PAN and
    expiry (the wallet also has an expired and a damaged copy of some cards)."""
    by_pan = {
        (entry["pan"], entry["expiry"]): card_id
        for card_id, entry in wallet["cards"].items()
        if "damaged_track" not in entry
    }
    found = []
    for customer in seed["customers"]:
        kinds = {a["number"]: a["type"] for a in customer["accounts"]}
        for card in customer["cards"]:
            card_id = by_pan.get((card["pan"], card["expiry"]))
            if card_id is None:
                continue
            accounts = tuple((kinds[n], n) for n in card["accounts"])
            found.append(SimCustomer(card_id, card["pin"], card["pan"], accounts))
    return found


def prepare_population(
    settings: Settings, run_dir: Path, *, atms: int, generated: int, seed: int
) -> Population:
    """Register ATMs 1..`atms` and `generated` new customers in the bank (through the bank's
    seeding code, so cards get their PIN hashes and accounts their opening entries), and write
    the wallet every ATM of the run loads. The same `seed` gives the same customers.
    """
    if generated < 0:
        raise PopulationError(f"cannot generate {generated} customers")
    ids = terminal_ids(atms)
    rng = random.Random(f"customers:{seed}")
    base_seed = read_data_file(bank_admin.SEED_FILE).data
    base_wallet = read_data_file(WALLET_FILE).data
    keys = base_seed["terminals"][0]["keys"]  # the shared test keys of every simulated ATM
    seed_doc: dict[str, Any] = {
        "version": VERSION,
        "currency": base_seed["currency"],
        "customers": list(base_seed["customers"]),
        "terminals": [{"id": tid, "keys": dict(keys)} for tid in ids],
    }
    wallet_doc: dict[str, Any] = {"version": VERSION, "cards": dict(base_wallet["cards"])}
    customers = _seeded_customers(base_seed, base_wallet)
    for index in range(1, generated + 1):
        seed_entry, wallet_entry = _generated_customer(index, rng)
        seed_doc["customers"].append(seed_entry)
        card_id = f"fleet{index:05d}"
        wallet_doc["cards"][card_id] = wallet_entry
        card = seed_entry["cards"][0]
        accounts = tuple((a["type"], a["number"]) for a in seed_entry["accounts"])
        customers.append(SimCustomer(card_id, card["pin"], card["pan"], accounts))
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_path = run_dir / "bank_seed.yaml"
    wallet_path = run_dir / "wallet.yaml"
    # Test data of a simulation run only: the PINs in the seed file are the simulated cards'.
    seed_path.write_text(yaml.safe_dump(seed_doc, sort_keys=False), encoding="utf-8")
    seed_path.chmod(0o600)
    wallet_path.write_text(yaml.safe_dump(wallet_doc, sort_keys=False), encoding="utf-8")
    load_wallet(wallet_path)  # fail here, not in 200 card readers, if an entry is wrong
    try:
        bank_admin.seed_bank(settings, seed_path)
    except (bank_admin.BankAdminError, DataFileError) as err:
        raise PopulationError(f"cannot register the fleet in the bank: {err}") from err
    return Population(tuple(customers), ids, wallet_path, seed_path)


def atm_profile(terminal_id: str, wallet_path: Path) -> AtmProfile:
    """The default ATM profile under another terminal id, loading the run's wallet."""
    document: dict[str, Any] = read_data_file(DEFAULT_PROFILE).data
    document["terminal_id"] = terminal_id
    document["devices"]["card_reader"]["wallet"] = str(wallet_path)
    # A fleet's receipts are counted and read as text; an image is drawn only if asked for.
    document["devices"]["receipt_printer"]["images"] = IMAGES_ON_REQUEST
    document.pop("state_dir", None)
    return parse_profile(document, DEFAULT_PROFILE)
