"""Where a simulated ATM keeps its state: journal, advice queue, STAN and device counters."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings


def atm_state_dir(settings: Settings, terminal_id: str) -> Path:
    return settings.atm_sim_home / "atms" / terminal_id
