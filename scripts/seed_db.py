"""Seed the sample bank: `python -m scripts.seed_db` migrates the schema and creates the customers,
accounts, cards and terminals of config/bank_seed.yaml. Running it again changes nothing.
"""

from __future__ import annotations

import sys

from config.data_files import DataFileError
from config.log_format import configure_logging
from config.settings import SettingsError, load_settings
from host.bank_admin import BankAdminError, seed_bank
from host.crypto_keys import KeyStoreError
from host.database import DatabaseError


def main() -> int:
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)  # as every atm-sim process
        print(seed_bank(settings))
    except (SettingsError, BankAdminError, DataFileError, DatabaseError, KeyStoreError) as err:
        print(f"seed_db: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
