"""Docker files cannot run here (no engine); check what can be checked by reading them, and that
every command the image and the compose services run exists in the installed package."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from device.sim.cli import _parser

ROOT = Path(__file__).parents[2]
PRODUCT_SERVICES = ("app", "host", "worker")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_compose_has_the_guides_five_services_wired_together() -> None:
    services = compose()["services"]
    assert set(services) == {"app", "host", "db", "redis", "worker"}
    assert services["db"]["image"] == "postgres:16"
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert services["app"]["ports"] == ["8000:8000"]
    assert services["host"]["ports"] == ["8583:8583"]
    for name in PRODUCT_SERVICES:
        service = services[name]
        assert service["build"]["target"] == "production", name
        assert service["env_file"] == ".env", name
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://atm:"), name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert service["depends_on"]["db"]["condition"] == "service_healthy", name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
    for name in ("app", "host", "db", "redis"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["app"]["volumes"] == services["worker"]["volumes"]  # the statement PDFs
    assert set(compose()["volumes"]) == {"pgdata", "statements"}


def test_every_variable_compose_reads_is_named_in_env_example() -> None:
    used = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    example = (ROOT / ".env.example").read_text()
    named = {line.split("=", 1)[0].lstrip("# ") for line in example.splitlines() if "=" in line}
    assert used <= named
    assert {"REDIS_URL", "STATEMENT_BUCKET", "POSTGRES_PASSWORD"} <= named


def test_dockerfile_builds_a_non_root_production_image_with_the_guides_files() -> None:
    instructions = dockerfile_instructions()
    stages = [arg.split()[-1] for op, arg in instructions if op == "FROM"]
    assert stages == ["build", "production"]
    production = instructions[[op for op, _ in instructions].index("FROM", 1) :]
    users = [arg for op, arg in production if op == "USER"]
    assert users and users[-1].isdigit() and users[-1] != "0"
    exposed = {port for op, arg in production if op == "EXPOSE" for port in arg.split()}
    assert exposed == {"8000", "8583"}
    assert any(op == "HEALTHCHECK" and "/health" in arg for op, arg in production)
    copied = [arg.split()[0] for op, arg in production if op == "COPY" and "--from" not in arg]
    assert copied == ["alembic.ini", "host/migrations", "scripts"]
    for path in copied:
        assert (ROOT / path).exists(), f"the image copies {path}, which is missing"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for op, arg in instructions:
        if op == "COPY" and "--from" not in arg:
            assert arg.split()[0] not in ignored, f"{arg.split()[0]} is in .dockerignore"


def _commands() -> list[list[str]]:
    """Every command line the image and the compose services start, shells unwrapped."""
    found = []
    for op, arg in dockerfile_instructions():
        if op == "CMD":
            found.append(yaml.safe_load(arg))
    for service in compose()["services"].values():
        if "build" in service and "command" in service:
            found.append(service["command"])
    out = []
    for command in found:
        if command[:2] == ["sh", "-c"]:
            parts = command[2].split("&&")
            out += [shlex.split(part.strip().removeprefix("exec ")) for part in parts]
        else:
            out.append(command)
    return [[word.strip() for word in c] for c in out]


def test_entry_commands_exist_in_the_installed_package() -> None:
    commands = _commands()
    assert {c[0] for c in commands} == {"atm-sim", "uvicorn"}
    for command in commands:
        if command[0] == "atm-sim":
            args = _parser().parse_args(command[1:])  # exits (fails the test) on a bad word
            assert callable(args.run)
        else:
            assert command[1] == "--factory"
            module, _, attribute = command[2].partition(":")
            assert callable(getattr(importlib.import_module(module), attribute)), command[2]
    # The guide's one-off commands: `alembic upgrade head`, `python -m scripts.seed_db`.
    assert importlib.util.find_spec("alembic") is not None
    assert importlib.util.find_spec("scripts.seed_db") is not None
    assert (ROOT / "alembic.ini").read_text().count("script_location = %(here)s/host/migrations")
