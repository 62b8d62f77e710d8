"""session_bench's floor samples: each kind taken as often as asked between sessions, over a real
pty, TCP and PostgreSQL, and nothing left behind."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from scripts.bench.io_floor import IoFloor


def test_samples_accumulate_and_the_probes_are_closed_after(
    bank_engine: sa.Engine, tmp_path: Path
) -> None:
    threads_before = set(threading.enumerate())
    with IoFloor(bank_engine, tmp_path) as floor:
        floor.sample(pty=3, tcp=2, database=1, disk=2)
        floor.sample(pty=3, tcp=2, database=1, disk=2)
        assert (tmp_path / "fsync-probe").stat().st_size == 4 * 121  # four journal-sized lines
    assert [len(s) for s in (floor.pty, floor.tcp, floor.database, floor.disk)] == [6, 4, 2, 4]
    assert all(0 < median < 1 for median in floor.medians())
    assert not (tmp_path / "fsync-probe").exists()
    lingering = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert lingering == []
