"""What `atm-sim` prints, run as a real process: typed PINs never appear, and an unreachable
database, a bad card and an unwritable file each give one line a person can act on.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from config.settings import Settings
from host.crypto_keys import mac_key_lookup
from host.server import HostServer
from host.service import Bank
from tests.conftest import TEST_SECRETS

PIN = "1234"  # Alice's test PIN in config/bank_seed.yaml


def atm_sim(
    *args: str, env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device.sim.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def cli_env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LOG_LEVEL")}
    return {**env, **TEST_SECRETS, "ATM_SIM_HOME": str(home), **settings}


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def lines_showing_the_pin(output: str) -> list[str]:
    """Lines where the PIN's digits appear as a number of their own (pty paths excepted)."""
    return [
        line
        for line in output.splitlines()
        if re.search(rf"(?<!\d){PIN}(?!\d)", line) and "/dev/pts/" not in line
    ]


@pytest.fixture
def host_port(bank_engine: sa.Engine, bank_settings: Settings) -> Iterator[int]:
    """The ISO 8583 host on the freshly seeded bank, on a free local port."""
    server = HostServer(
        Bank(bank_engine, bank_settings), mac_key_lookup(bank_engine, bank_settings)
    )
    yield server.start()
    server.stop()


# ----- typed PINs ---------------------------------------------------------------------------


def test_the_demo_prints_stars_for_the_pin(
    make_database: Callable[[], str], tmp_path: Path
) -> None:
    result = atm_sim("demo", env=cli_env(tmp_path / "home", DATABASE_URL=make_database()))
    assert result.returncode == 0, result.stderr
    assert "> customer: type ****" in result.stdout
    assert lines_showing_the_pin(result.stdout + result.stderr) == []


def test_atm_run_prints_stars_for_the_pin(host_port: int, tmp_path: Path) -> None:
    script = tmp_path / "alice.txt"
    script.write_text(
        f"wait idle\ninsert alice\nwait pin_entry\ntype {PIN}\npress enter\n"
        "wait transaction_menu\npress cancel\nwait ejecting_card\ntake card\nwait idle\n"
    )
    result = atm_sim(
        "atm", "run", "--port", str(host_port), "--script", str(script),
        "--state-dir", str(tmp_path / "atm"), "--virtual-clock",
        env=cli_env(tmp_path / "home"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "action type ****" in result.stdout
    assert "screen transaction_menu" in result.stdout  # the PIN was entered and accepted
    assert lines_showing_the_pin(result.stdout + result.stderr) == []


# ----- an unreachable DATABASE_URL ----------------------------------------------------------


@pytest.mark.parametrize(
    "command", [("demo",), ("host", "serve", "--port", "0"), ("db", "upgrade")], ids=" ".join
)
def test_an_unreachable_database_url_is_one_line_naming_it(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    port = closed_port()
    home = tmp_path / "home"
    url = f"postgresql://atm:hush-secret@127.0.0.1:{port}/atm"
    result = atm_sim(*command, env=cli_env(home, DATABASE_URL=url))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"atm-sim: DATABASE_URL=postgresql://atm:***@127.0.0.1:{port}/atm: no PostgreSQL server "
        f"answers at 127.0.0.1:{port} (Connection refused); start that server, or unset "
        "DATABASE_URL to use the embedded one"
    ]
    assert "hush-secret" not in result.stdout + result.stderr
    assert not home.exists()  # no embedded server was started instead


# ----- bad cards ----------------------------------------------------------------------------


def test_a_card_not_in_the_wallet_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    script = tmp_path / "mallory.txt"
    script.write_text("wait idle\ninsert mallory\n")
    home = tmp_path / "home"
    result = atm_sim("atm", "run", "--port", "1", "--script", str(script), env=cli_env(home))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"atm-sim: {script}: line 2: no card 'mallory' in the wallet; "
        "cards: alice, bob, charlie, damaged, expired, unknown"
    ]
    assert not home.exists()


def test_a_bad_wallet_file_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    wallet = tmp_path / "wallet.yaml"
    wallet.write_text('version: 1\ncards:\n  eve:\n    pan: "4111111111111111"\n')
    profile = tmp_path / "profile.yaml"
    default = Path(__file__).resolve().parents[2] / "config" / "atm_profiles" / "default.yaml"
    profile.write_text(default.read_text().replace("config/wallet.yaml", str(wallet)))
    script = tmp_path / "wait.txt"
    script.write_text("wait idle\n")
    home = tmp_path / "home"
    result = atm_sim(
        "atm", "run", "--port", "1", "--profile", str(profile), "--script", str(script),
        env=cli_env(home),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"atm-sim: {wallet}:3: cards.eve.name: missing"]
    assert not home.exists()


# ----- files that cannot be written ---------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_names_the_file(bank_url: str, tmp_path: Path) -> None:
    out = tmp_path / "statements"
    out.mkdir()
    target = out / "statement-10000001-2026-11-01-2026-11-30.pdf"
    target.symlink_to("/dev/full")  # every write to it fails: no space left on device
    result = atm_sim(
        "statement", "10000001", "--from", "2026-11-01", "--to", "2026-11-30",
        env=cli_env(tmp_path / "home", DATABASE_URL=bank_url, STATEMENT_OUTPUT_DIR=str(out)),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"atm-sim: {target}: No space left on device"]


def test_a_state_folder_that_cannot_be_made_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    script = tmp_path / "wait.txt"
    script.write_text("wait idle\n")
    state = blocker / "state"
    result = atm_sim(
        "atm", "run", "--port", "1", "--state-dir", str(state), "--script", str(script),
        env=cli_env(tmp_path / "home"),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"atm-sim: {state}: Not a directory"]
