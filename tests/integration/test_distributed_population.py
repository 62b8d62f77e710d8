"""A fleet shard rebuilds the run's customers from the seed instead of receiving PINs in a task
message: what it rebuilds must be exactly what the coordinator registered in the bank."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from config.settings import Settings
from device.sim.customers import prepare_population
from device.sim.distributed_fleet import shard_population


def test_shard_rebuilds_the_registered_customers_and_wallet(
    make_database: Callable[[], str], settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for(DATABASE_URL=make_database())
    registered = prepare_population(settings, tmp_path / "coordinator", atms=2, generated=4, seed=9)
    (tmp_path / "shard").mkdir()
    rebuilt, wallet = shard_population(tmp_path / "shard", generated=4, seed=9)
    assert rebuilt == list(registered.customers)
    assert yaml.safe_load(wallet.read_text()) == yaml.safe_load(registered.wallet_path.read_text())
