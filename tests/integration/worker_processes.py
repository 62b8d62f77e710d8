"""Real Redis servers and real `atm-sim worker` processes for the worker tests: started on free
ports as child processes (no daemon), stopped by their own process ids.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from config.settings import load_settings
from host.bank_admin import seed_bank
from tests.conftest import TEST_SECRETS

REDIS_MISSING = (
    "redis-server is not installed: `apt-get install redis-server` (Debian/Ubuntu) or "
    "`brew install redis` puts it on PATH; .ci/run installs it"
)
READY_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; skips the test where none is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(REDIS_MISSING)
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="atm-redis-"))
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(work), "--daemonize", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a free loopback port (a real HTTP endpoint speaking S3's protocol),
    with boto3 pointed at it through the environment."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield endpoint
    finally:
        server.stop()


def seeded_bank(make_database: Callable[[], str], home: Path) -> str:
    """A new database on the test server holding the migrated, seeded sample bank; its URL."""
    url = make_database()
    seed_bank(load_settings({**TEST_SECRETS, "DATABASE_URL": url, "ATM_SIM_HOME": str(home)}))
    return url


def worker_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


@contextlib.contextmanager
def workers(env: Mapping[str, str], log_dir: Path, count: int = 1) -> Iterator[list[Path]]:
    """`count` worker processes (`atm-sim worker`), each ready to take tasks; their log files."""
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for number in range(count):
            log = log_dir / f"worker-{number}.log"
            with log.open("wb") as sink:
                command = [sys.executable, "-m", "device.sim.cli", "worker"]
                child = subprocess.Popen(command, env=dict(env), stdout=sink, stderr=sink)
            processes.append((child, log))
        for child, log in processes:
            _wait_ready(child, log)
        yield [log for _, log in processes]
    finally:
        for child, _ in processes:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        for child, _ in processes:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)


def _wait_ready(child: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while b" ready." not in log.read_bytes():
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
