"""A real `atm-sim api serve` process on a free local port for end-to-end tests: its own
ATM_SIM_HOME and database, stderr kept in a file, stopped with SIGTERM as a service manager would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import TEST_SECRETS

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 60.0
STOP_SECONDS = 15.0


@dataclass
class LiveApi:
    url: str
    stderr_file: Path
    process: subprocess.Popen[bytes]

    def stderr(self) -> str:
        return self.stderr_file.read_text(encoding="utf-8")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def product_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of an `atm-sim` process: test secrets, its own home, no inherited
    database or log settings."""
    inherited = ("DATABASE_URL", "LOG_FORMAT", "LOG_LEVEL")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    return {**env, **TEST_SECRETS, "ATM_SIM_HOME": str(home), **settings}


def atm_sim(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device.sim.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        check=False,
    )


@contextlib.contextmanager
def live_api(
    workdir: Path, env: dict[str, str], *serve_args: str, wait: bool = True
) -> Iterator[LiveApi]:
    """`atm-sim api serve` until the block ends; fails with its stderr if it does not answer
    /health within START_SECONDS. wait=False: the caller waits (`wait_healthy`) when it has
    done something else meanwhile."""
    port = free_port()
    stderr_file = workdir / "api.stderr"
    command = [sys.executable, "-m", "device.sim.cli", "api", "serve", "--port", str(port)]
    with stderr_file.open("wb") as sink:
        process = subprocess.Popen(
            [*command, *serve_args],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=env,
            cwd=REPO,
        )
    api = LiveApi(f"http://127.0.0.1:{port}", stderr_file, process)
    try:
        if wait:
            wait_healthy(api)
        yield api
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_SECONDS)


def wait_healthy(api: LiveApi) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if api.process.poll() is not None:
            raise AssertionError(f"atm-sim api serve ended: {api.stderr()[-2000:]}")
        if _answers_health(api.url):
            return
        time.sleep(0.2)
    raise AssertionError(f"atm-sim api serve did not answer in {START_SECONDS} s")


def _answers_health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False
