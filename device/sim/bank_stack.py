"""The bank side of a simulation in one process: database (embedded unless DATABASE_URL), schema,
seed data, the authorisation service and the ISO 8583 server on a free local port.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field

import sqlalchemy as sa

from config.settings import Settings
from device.sim.simulated_atm import HostAddress
from host import bank_admin
from host.crypto_keys import mac_key_lookup
from host.database import database_url, host_engine
from host.models import Account
from host.server import WORKERS, HostServer
from host.service import Bank


@dataclass
class BankStack:
    settings: Settings
    engine: sa.Engine = field(init=False)
    bank: Bank = field(init=False)
    server: HostServer = field(init=False)
    seed_report: str = field(init=False, default="")

    def start(self, *, seed: bool = True, port: int = 0) -> BankStack:
        url = database_url(self.settings)
        if seed:
            self.seed_report = bank_admin.seed_bank(self.settings)
        else:
            bank_admin.upgrade_database(self.settings)
        self.engine = host_engine(url, WORKERS)
        self.bank = Bank(self.engine, self.settings)
        self.server = HostServer(self.bank, mac_key_lookup(self.engine, self.settings), port=port)
        self.server.start()
        return self

    def account_balance(self, number: str) -> int:
        """The ledger balance of an account, in cents, read from the bank's database."""
        with self.engine.connect() as conn:
            balance = conn.scalar(sa.select(Account.ledger_balance).where(Account.number == number))
        if balance is None:
            raise LookupError(f"no account {number!r}")
        return int(balance)

    def address_for(self, mac_key_hex: str) -> HostAddress:
        return HostAddress("127.0.0.1", self.server.port, binascii.unhexlify(mac_key_hex))

    def stop(self) -> None:
        self.server.stop()
        self.engine.dispose()

    def __enter__(self) -> BankStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
