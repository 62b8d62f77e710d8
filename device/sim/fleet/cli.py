"""`atm-sim fleet`: one run on a fresh bank in a scratch directory, sharded when it is big;
the bank and the directory of a run serve the chaos and distributed runs too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from config.settings import Settings
from device.sim.bank_stack import BankStack
from device.sim.fleet.in_process import Fleet, FleetConfig
from device.sim.fleet.sharded import SHARD_ATMS, run_sharded
from host.database import database_url, scratch_database


@contextlib.contextmanager
def fleet_bank(settings: Settings, run_dir: Path) -> Iterator[BankStack]:
    """A fresh bank for one run: a new database on DATABASE_URL's server (dropped at the end),
    or an embedded PostgreSQL under the run directory."""
    if settings.database_url:
        with (
            scratch_database(database_url(settings), "atm_fleet") as url,
            BankStack(dataclasses.replace(settings, database_url=url)) as stack,
        ):
            yield stack
    else:
        from host.database import stop_embedded

        home = run_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        try:
            with BankStack(dataclasses.replace(settings, atm_sim_home=home)) as stack:
                yield stack
        finally:
            stop_embedded()


@contextlib.contextmanager
def run_directory(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="atm-fleet-"))
    path.chmod(0o755)  # the embedded PostgreSQL runs as its own user
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def run_fleet(
    settings: Settings,
    *,
    atms: int,
    sessions: int,
    seed: int,
    customers: int | None = None,
    link_backend: str = "pty",
    out: Callable[[str], None] = print,
) -> int:
    """`atm-sim fleet`: 0 when every invariant holds, 1 otherwise."""
    generated = FleetConfig.customers if customers is None else customers
    config = FleetConfig(
        atms=atms, sessions=sessions, seed=seed, customers=generated, link_backend=link_backend
    )
    with run_directory() as run_dir, fleet_bank(settings, run_dir) as bank:
        out(
            f"fleet: {atms} ATMs, {sessions} sessions, seed {seed}, {link_backend} links; "
            f"bank on port {bank.server.port}"
        )
        if atms > SHARD_ATMS:
            report = run_sharded(config, bank, run_dir, out=out).report
        else:
            with Fleet(config, bank, run_dir, out=out) as fleet:
                out(f"set up in {fleet.setup_seconds:.1f} s")
                report = fleet.run()
    out("summary:")
    for line in report.summary():
        out(f"  {line}")
    if not report.ok:
        out(f"invariant violated; replay with --seed {seed}")
        return 1
    return 0
