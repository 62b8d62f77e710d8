"""What a process that never migrates does not load: Alembic (~0.1 s per process) is imported
only when a migration runs, so scenario workers, ATMs and the host start without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module",
    ["device.sim.scenarios.parallel", "device.sim.simulated_atm", "host.server", "host.bank_admin"],
)
def test_alembic_is_not_imported_by(module: str) -> None:
    probe = f"import sys, {module}; print([m for m in sys.modules if m.startswith('alembic')])"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
