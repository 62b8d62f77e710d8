"""A host killed with SIGKILL leaves its embedded PostgreSQL running: the next `atm-sim host
serve` adopts that server (or replaces one it cannot use), never starts a second one, and stops
it when it ends itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import psutil
import pytest

from device.host_client import HostClient
from tests.conftest import TEST_SECRETS

MAC_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LOG_LEVEL")}
    return {**env, **TEST_SECRETS, "ATM_SIM_HOME": str(home)}


def postmasters(data_dir: Path) -> list[psutil.Process]:
    """The postgres processes started on data_dir (`postgres -D data_dir ...`)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] != "postgres" or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(f == "-D" and v and Path(v).resolve() == data_dir for f, v in pairwise(cmdline)):
            found.append(process)
    return found


def wait_until_gone(data_dir: Path, seconds: float = 15.0) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while postmasters(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    return postmasters(data_dir)


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """An ATM_SIM_HOME with a seeded embedded bank, its server stopped."""
    # Not under pytest's 0700 temp dirs: the embedded server runs as its own system user.
    path = Path(tempfile.mkdtemp(prefix="atm-sim-restart-"))
    seeded = subprocess.run(
        [sys.executable, "-m", "device.sim.cli", "db", "seed"],
        env=cli_env(path),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    yield path
    for process in postmasters(path / "pgdata"):
        process.send_signal(signal.SIGINT)
        process.wait(15)
    shutil.rmtree(path, ignore_errors=True)


def start_host(home: Path) -> tuple[subprocess.Popen[str], int]:
    """`atm-sim host serve --port 0`, once it listens; its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "device.sim.cli", "host", "serve", "--port", "0"],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        match = re.search(r"ISO 8583 host listening on 127\.0\.0\.1:(\d+) ", line)
        if match:
            return process, int(match.group(1))
    process.wait(10)
    raise AssertionError(f"the host did not start (exit {process.returncode}): {''.join(seen)}")


def sign_on(port: int) -> None:
    with HostClient("127.0.0.1", port, "ATM00001", MAC_KEY, timeout=10) as client:
        client.sign_on()


def kill_hard(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait(10)


def test_after_a_sigkill_the_next_host_adopts_the_server_and_stops_it(home: Path) -> None:
    data_dir = (home / "pgdata").resolve()
    first, _ = start_host(home)
    try:
        [server] = postmasters(data_dir)
    finally:
        kill_hard(first)
    assert [p.pid for p in postmasters(data_dir)] == [server.pid]  # left running

    second, port = start_host(home)
    try:
        sign_on(port)
        assert [p.pid for p in postmasters(data_dir)] == [server.pid]  # adopted, no second one
        second.send_signal(signal.SIGINT)
        assert second.wait(30) == 130
    finally:
        if second.poll() is None:
            kill_hard(second)
    assert wait_until_gone(data_dir) == []  # the last user stopped it


def test_a_stale_postmaster_pid_of_another_process_does_not_stop_the_start(home: Path) -> None:
    data_dir = (home / "pgdata").resolve()
    first, _ = start_host(home)
    try:
        [server] = postmasters(data_dir)
    finally:
        kill_hard(first)
    server.kill()  # the whole machine lost power, say
    server.wait(10)
    pid_file = data_dir / "postmaster.pid"
    lines = pid_file.read_text().split("\n")
    lines[0] = str(os.getpid())  # its number now belongs to a live process that is no server
    pid_file.write_text("\n".join(lines))

    second, port = start_host(home)
    try:
        sign_on(port)
        [restarted] = postmasters(data_dir)
        assert restarted.pid != server.pid
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 128 + signal.SIGTERM
    finally:
        if second.poll() is None:
            kill_hard(second)
    assert wait_until_gone(data_dir) == []
