"""scripts/smoke_test.sh and the curl examples of docs/api.md, run against a live
`atm-sim api serve` process on a free port, as after a deployment.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import load_settings
from host import bank_admin
from host.api.operators import create_operator
from host.database import make_engine
from tests.conftest import TEST_SECRETS
from tests.e2e.live_api import REPO, LiveApi, live_api, product_env

SMOKE = REPO / "scripts" / "smoke_test.sh"
DOCS = REPO / "docs" / "api.md"
OPERATOR = ("smoke-admin", "smoke-admin-password")


@pytest.fixture(scope="module")
def server(
    make_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    home: Path = tmp_path_factory.mktemp("smoke")
    url = make_database()
    settings = load_settings({**TEST_SECRETS, "DATABASE_URL": url, "ATM_SIM_HOME": str(home)})
    bank_admin.upgrade_database(settings)
    engine = make_engine(url)
    create_operator(engine, settings, OPERATOR[0], "admin", OPERATOR[1])
    engine.dispose()
    env = product_env(home, DATABASE_URL=url, LOG_LEVEL="WARNING")
    with live_api(home, env, "--seed") as api:
        yield api


def _bash(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args], capture_output=True, text=True, timeout=90, env=env, check=False
    )


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "OPERATOR_NAME": OPERATOR[0], **extra}


def test_smoke_script_passes_against_a_live_server(server: LiveApi) -> None:
    run = _bash(str(SMOKE), server.url, env=_env(OPERATOR_PASSWORD=OPERATOR[1]))
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout + run.stderr
    assert lines[-1] == f"smoke test passed: {server.url}"
    checks = lines[:-1]
    assert all(line.startswith("ok   ") for line in checks), checks
    assert "ok   balance of 10000001 moved by exactly 5000 cents" in "\n".join(checks)
    assert any("lab ATM ATM00001 stopped" in line for line in checks)


def test_smoke_script_fails_on_a_wrong_password_and_a_dead_server(server: LiveApi) -> None:
    wrong = _bash(str(SMOKE), server.url, env=_env(OPERATOR_PASSWORD="not-the-password"))
    assert wrong.returncode == 1
    assert "FAIL sign in as smoke-admin: 401" in wrong.stdout
    assert wrong.stdout.splitlines()[-1] == f"smoke test FAILED: {server.url}"
    dead = _bash(str(SMOKE), "http://127.0.0.1:9", env=_env(OPERATOR_PASSWORD=OPERATOR[1]))
    assert dead.returncode == 1
    assert dead.stdout.startswith("FAIL health: 000")
    usage = _bash(str(SMOKE), env=_env())
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_the_curl_examples_of_the_api_guide_run(server: LiveApi) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    script = "set -euo pipefail\n" + "\n".join(blocks)
    run = _bash(
        "-c",
        script,
        env=_env(BASE_URL=server.url, OPERATOR_PASSWORD=OPERATOR[1]),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '"done":"receipt taken"' in run.stdout
    assert '"state":"idle"' in run.stdout
    assert '"kind":"scenario_run","status":"succeeded"' in run.stdout
    assert "<testsuite" in run.stdout
    assert "476173******0010" in run.stdout
    assert "4761739001010010" not in run.stdout
