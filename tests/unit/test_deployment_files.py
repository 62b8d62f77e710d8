"""Docker files cannot run here (no engine); check what can be checked by reading them."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]


def test_compose_file_parses_and_wires_host_to_database() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "host"}
    assert services["host"]["build"]["target"] == "production"
    assert services["host"]["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert services["host"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_dockerfile_has_a_production_stage_running_the_host() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [line.split()[-1] for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["build", "production"]
    assert "atm-sim host serve" in text
    for copied in ("alembic.ini", "host/migrations"):
        assert (ROOT / copied).exists(), f"Dockerfile copies {copied}, which is missing"
